"""Visual reports of ``arssr upsample`` runs: one self-contained HTML page per output, and a cohort index.

A page shows orthogonal slices through the centre of the output and through
the brightest region of the input (for thick slices, the planes that contain
the slice axis), each as the input (nearest neighbour), its cubic B-spline
interpolation and the output, with a slider between the last two; the output
minus the cubic interpolation and the consistency residual before the
projection (``arssr.inference.upsample(details=True)``) on symmetric
colour scales; the facts of the run (its sidecar record) and flags for what
needs a look: warnings (an input outside the model card's range among them)
and a dropped self-adaptation. Images are embedded as PNG, the script is
plain JavaScript: the page opens offline. The facts are embedded as JSON too,
so :func:`write_index` rebuilds the index from the pages (and sidecars) present.

The images are made by ``arssr.report_images``, which needs matplotlib
and Pillow: ``pip install 'arssr[report]'``.
"""

from __future__ import annotations

import html
import json
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import quote

import numpy as np

from arssr import __version__
from arssr.errors import InputError, OutputExistsError
from arssr.files import atomic_file, refuse_existing
from arssr.report_images import (COLOUR_FLOOR, COLOUR_PERCENTILE, GREY_PERCENTILES, PLANES, THUMBNAIL_PREFIX,
                                 render_images, require_imaging)

if TYPE_CHECKING:  # the index needs neither, nor torch, which they import: `arssr report` starts fast
    from arssr.volume import Volume

INDEX_NAME = "index.html"
#: ``id`` of the JSON facts embedded in a page, and of the table of an index.
FACTS_ID = "arssr-report"
INDEX_ID = "arssr-index"
#: The model card's ranges (``arssr.models.card``) as the page names them, and their units.
CARD_RANGES = {"input_spacing_mm": ("input voxel size", " mm"), "scale_range": ("scale", ""),
               "thick_scale_range": ("thick-slice scale", ""), "inplane_scale_range": ("in-plane scale", "")}
#: Where a thick-slice input's slice thickness came from (the sidecar's ``slice_thickness_from``).
THICKNESS_ORIGINS = {"option": "--slice-thickness", "sidecar": "SliceThickness of the input's JSON sidecar",
                     "spacing": "detected: one axis much coarser, slices as thick as spaced"}
#: Facts that a row of another name shows (or that only the index uses).
SHOWN_WITH_OTHERS = {"input_shape", "input_spacing_mm", "output_shape", "spacing_mm", "weights_sha256",
                     "slice_thickness", "slice_thickness_from", "slice_profile", "detail_gain_fitted", "precision",
                     "tile", "arguments", "flags", "thumbnail"}
_FACTS_PATTERN = re.compile(rf'<script type="application/json" id="{FACTS_ID}">(.*?)</script>', re.S)



@contextmanager
def kept_warnings() -> Iterator[list[str]]:
    """The messages of the warnings shown inside the block, in order and once each; they are still shown."""
    messages: list[str] = []
    with warnings.catch_warnings():  # restores ``showwarning`` afterwards; entering it resets "once" registries
        shown = warnings.showwarning

        def keep(message, category, filename, lineno, file=None, line=None):
            if str(message) not in messages:
                messages.append(str(message))
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = keep
        yield messages


def peak_memory_mib() -> float | None:
    """Peak resident memory of this process so far, in MiB (``None`` where the OS does not say)."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# ---------------------------------------------------------------------------
# Facts and flags
# ---------------------------------------------------------------------------

def run_facts(source: Volume, result: Volume, record: dict, card: dict) -> dict:
    """The sidecar ``record`` with what the page shows besides: the input's geometry, the per-axis scale and the
    model card."""
    return {
        **record,
        "input_shape": list(source.shape),
        "input_spacing_mm": [round(s, 6) for s in source.spacing],
        "scale": [round(m / n, 4) for n, m in zip(source.shape, result.shape)],
        "model_card": dict(card),
    }


def flags(facts: dict) -> list[str]:
    """What needs a look: each warning of the run (inputs outside the model card's range among them), and a
    self-adaptation that was dropped."""
    out = [f"warning: {message}" for message in facts.get("warnings") or []]
    adapt = facts.get("adapt")
    if adapt and not adapt.get("kept"):
        out.append(f"adaptation dropped: held-out PSNR {adapt['before']:.2f} -> {adapt['after']:.2f} dB "
                   "did not improve, so the default model was used")
    return out


def _number(value, digits: int = 3) -> str:
    """A float with at most ``digits`` decimals and no trailing zeros; anything else as it is."""
    if not isinstance(value, float):
        return str(value)
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _triple(values, unit: str = "", separator: str = " x ") -> str:
    return separator.join(_number(v, 4) for v in values) + unit


def fact_rows(facts: dict) -> list[tuple[str, str, str]]:
    """``(key, label, text)`` of each fact the page lists, in order."""
    card = facts.get("model_card") or {}
    ranges = [f"{label} {card[key].replace(',', '-')}{unit}"
              for key, (label, unit) in CARD_RANGES.items() if key in card]
    others = [f"{key.replace('_', ' ')} {value}" for key, value in sorted(card.items()) if key not in CARD_RANGES]
    card_text = ", ".join(ranges + others) or "no card"
    adapt = facts.get("adapt")
    if adapt:
        verdict = "kept" if adapt["kept"] else "dropped (the default model was used)"
        adapt_text = (f"held-out PSNR {adapt['before']:.2f} -> {adapt['after']:.2f} dB, {verdict}; "
                      f"{adapt['steps']} steps, {_number(adapt['seconds'], 1)} s")
    else:
        adapt_text = "not used"
    thickness = facts.get("slice_thickness")
    if thickness is None:
        slice_text = "none (a 3D volume)"
    else:
        thick = "as spaced" if thickness == "spacing" else f"{_number(thickness)} mm"
        origin = THICKNESS_ORIGINS.get(facts.get("slice_thickness_from"), facts.get("slice_thickness_from"))
        slice_text = f"{thick} slices, {facts.get('slice_profile')} profile" + (f" ({origin})" if origin else "")
    intensity = facts.get("slice_intensity")
    intensity_text = "not checked" if not intensity else (
        f"even / odd slices {intensity['even_over_odd']:.4g} (spread {intensity['spread']:.3g}) along axis "
        f"{intensity['axis']}: {'equalized' if intensity['equalized'] else 'left as it is'}")
    gain = facts.get("detail_gain")
    if gain is None:
        gain_text = "none (no consistency)"
    else:
        gain_text = gain if isinstance(gain, str) else _number(float(gain))
        gain_text += " (fitted on the input)" if facts.get("detail_gain_fitted") else " (given or fixed)"
    memory = facts.get("peak_memory_mib")
    rows = [
        ("input", "Input", f"{facts.get('input')}"),
        ("input_geometry", "Input grid",
         f"{_triple(facts['input_shape'])} voxels of {_triple(facts['input_spacing_mm'], ' mm')}"
         if "input_shape" in facts else "not recorded"),
        ("output", "Output", f"{facts.get('output')}"),
        ("output_geometry", "Output grid",
         f"{_triple(facts['output_shape'])} voxels of {_triple(facts['spacing_mm'], ' mm')}"),
        ("scale", "Scale", _triple(facts["scale"], separator=", ") if "scale" in facts else "not recorded"),
        ("weights", "Model", f"{facts.get('weights')} (sha256 {str(facts.get('weights_sha256'))[:12]})"),
        ("model_card", "Model card", card_text),
        ("slice_model", "Slice model", slice_text),
        ("slice_intensity", "Slice intensity", intensity_text),
        ("consistency", "Consistency operator", f"{facts.get('consistency')}"),
        ("detail_gain", "Detail gain", gain_text),
        ("adapt", "Self-adaptation", adapt_text),
        ("warnings", "Warnings", "; ".join(facts.get("warnings") or []) or "none"),
        ("seconds", "Time", f"{_number(facts.get('seconds'), 1)} s"),
        ("peak_memory_mib", "Peak memory", "not recorded" if memory is None
         else f"{_number(memory, 0)} MiB (resident, the process's peak up to this file)"),
        ("device", "Device", f"{facts.get('device')}, {facts.get('precision')}, tile {facts.get('tile') or 'auto'}"),
        ("arssr_version", "arssr", f"{facts.get('arssr_version')}: arssr {' '.join(facts.get('arguments') or [])}"),
    ]
    shown = {key for key, _, _ in rows} | SHOWN_WITH_OTHERS
    rows += [(key, key.replace("_", " "), json.dumps(value)) for key, value in sorted(facts.items())
             if key not in shown]  # fields of newer sidecars, as they are
    return rows


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fff;color:#111}
h1{font-size:1.4em;margin:0 0 .4em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.flags{background:#fdecea;border:2px solid #c62828;padding:.6em 1em .6em 2em;margin:.6em 0}
.flags li{color:#8e0000;font-weight:600}.ok{background:#e8f5e9;border:2px solid #2e7d32;padding:.6em 1em}
table.planes{border-collapse:collapse}table.planes td,table.planes th{padding:3px;vertical-align:top;text-align:center}
table.planes th{font-weight:600;font-size:.85em}.plane{text-align:right;white-space:nowrap}
img{background:#000;display:block}img.voxels{image-rendering:pixelated}
.compare{position:relative}.compare img{position:absolute;left:0;top:0}
.compare input{position:absolute;left:0;width:100%;margin:0}
.scale{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:.3em 0}.scale img{width:200px;height:10px}
table.facts{border-collapse:collapse;margin-top:.4em}table.facts th,table.facts td{border:1px solid #ccc;
padding:3px 8px;text-align:left;vertical-align:top;font-size:.9em}table.facts th{background:#f3f3f3}
table.index{border-collapse:collapse}table.index td,table.index th{border:1px solid #ccc;padding:4px 8px;
vertical-align:middle;text-align:left}tr.flagged{background:#fdecea}td.number{white-space:nowrap}
"""

#: The slider between the cubic interpolation and the output: the output covers the cubic image up to the slider.
_SCRIPT = """
document.querySelectorAll('.compare').forEach(function (box) {
  var under = new Image(), over = new Image(), slider = document.createElement('input');
  under.src = document.getElementById(box.dataset.under).src;
  over.src = document.getElementById(box.dataset.over).src;
  [under, over].forEach(function (image) { image.width = box.dataset.width; image.height = box.dataset.height; });
  slider.type = 'range'; slider.min = 0; slider.max = 100; slider.value = 50;
  slider.style.top = box.dataset.height + 'px';
  slider.title = 'left of the line: the output; right: the cubic interpolation';
  function wipe() { over.style.clipPath = 'inset(0 ' + (100 - slider.value) + '% 0 0)'; }
  slider.addEventListener('input', wipe);
  box.append(under, over, slider);
  wipe();
});
"""

_AXIS_NAMES = ("x (left-right)", "y (posterior-anterior)", "z (inferior-superior)")


def _escape(text) -> str:
    return html.escape(str(text), quote=True)


def _embedded_json(value: dict) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _image(uri: str, width: int, height: int, ident: str = "", voxels: bool = False, alt: str = "") -> str:
    attributes = f' id="{ident}"' if ident else ""
    attributes += ' class="voxels"' if voxels else ""
    return f'<img src="{uri}" width="{width}" height="{height}" alt="{_escape(alt)}"{attributes}>'


def _scale_bar(pictures: dict, kind: str, label: str) -> str:
    limit = pictures["limits"][kind]
    return (f'<div class="scale" id="scale-{kind}"><b>{label}</b> <span>{-limit:.4g}</span><img '
            f'src="{pictures["colour_bar"]}" alt="colour scale"><span>+{limit:.4g}</span></div>')


def summary(facts: dict) -> str:
    """One line: the scale, the model, the consistency operator, the detail gain and the time."""
    gain = facts.get("detail_gain")
    scale = ", ".join(_number(float(k)) for k in facts["scale"])
    return (f"x{scale} with {Path(str(facts.get('weights'))).name}, consistency {facts.get('consistency')}, "
            f"detail gain {gain if isinstance(gain, str) else _number(float(gain))}, "
            f"{_number(facts.get('seconds'), 1)} s")


def render_page(facts: dict, pictures: dict) -> str:
    """The HTML of one run's page from its :func:`run_facts` and :func:`render_images`."""
    name = Path(str(facts.get("output"))).name
    run_flags = flags(facts)
    embedded = {**facts, "flags": run_flags, "thumbnail": pictures["thumbnail"]}
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="arssr {_escape(__version__)}">',
        f"<title>arssr report: {_escape(name)}</title><style>{_STYLE}</style>",
        f'<script type="application/json" id="{FACTS_ID}">{_embedded_json(embedded)}</script>',
        f"</head><body><h1>arssr upsample: {_escape(name)}</h1>",
        f'<p class="summary">{_escape(summary(facts))}</p>',
    ]
    if run_flags:
        items = "".join(f'<li class="flag">{_escape(flag)}</li>' for flag in run_flags)
        parts.append(f'<section id="flags"><ul class="flags">{items}</ul></section>')
    else:
        parts.append('<section id="flags"><p class="ok">No flags: no warnings, and the model was not '
                     "self-adapted or kept its adaptation.</p></section>")
    parts.append('<section id="slices">')
    if (facts.get("slice_intensity") or {}).get("equalized"):
        parts.append("<p>The input is shown with its slice intensities equalized (--equalize-slices), as the "
                     "network saw it.</p>")
    if pictures["slice_axis"] is not None:
        parts.append(f"<p>Thick slices along {_AXIS_NAMES[pictures['slice_axis']]}: the planes that contain the "
                     "slice axis.</p>")
    residual = pictures["images"][next(iter(pictures["images"]))]["residual"] is not None
    headings = ["", "Input (nearest)", "Cubic", "Output", "Output | cubic (slider)", "Output - cubic"]
    headings += ["Residual"] if residual else []
    titles = {"centre": "Through the centre", "brightest": "Through the brightest region"}
    for place, point in pictures["places"].items():
        parts.append(f"<h2>{titles[place]} (output voxel {', '.join(map(str, point))}, RAS axes)</h2>")
        parts.append('<table class="planes"><tr>' + "".join(f"<th>{h}</th>" for h in headings) + "</tr>")
        for axis in pictures["planes"]:
            entry = pictures["images"][place, axis]
            width, height = entry["size"]
            ident = f"{place}-{PLANES[axis]}"
            cells = [
                f'<th class="plane">{PLANES[axis]}<br>{"xyz"[axis]} = {point[axis]}<br>'
                f'(input {entry["input_index"]})</th>',
                _image(entry["input"], width, height, f"{ident}-input", voxels=True, alt=f"input {PLANES[axis]}"),
                _image(entry["cubic"], width, height, f"{ident}-cubic", alt=f"cubic {PLANES[axis]}"),
                _image(entry["output"], width, height, f"{ident}-output", alt=f"output {PLANES[axis]}"),
                f'<div class="compare" data-under="{ident}-cubic" data-over="{ident}-output" data-width="{width}" '
                f'data-height="{height}" style="width:{width}px;height:{height + 24}px"><noscript>needs JavaScript'
                "</noscript></div>",
                _image(entry["difference"], width, height, f"{ident}-difference", alt=f"output - cubic {PLANES[axis]}"),
            ]
            if residual:
                cells.append(_image(entry["residual"], width, height, f"{ident}-residual", voxels=True,
                                    alt=f"residual {PLANES[axis]}"))
            parts.append("<tr>" + "".join(f"<td>{cell}</td>" if i else cell for i, cell in enumerate(cells)) + "</tr>")
        parts.append("</table>")
    parts.append(_scale_bar(pictures, "difference", "Output - cubic"))
    if residual:
        parts.append(_scale_bar(pictures, "residual", "Residual"))
    note = (f"<p>Intensity units, blue below zero, red above; each colour scale ends at the "
            f"{COLOUR_PERCENTILE:g}th percentile of the magnitudes shown, or at {100 * COLOUR_FLOOR:g} % of the grey "
            "scale if that is more. ")
    if residual:
        note += (f"The residual is the input minus the degradation of the output before the consistency projection "
                 f"({_escape(facts.get('consistency'))}), on the input's grid: where the network disagreed with the "
                 "input; the projection removes it. ")
    else:
        note += "No residual: the run used no consistency projection (--consistency none). "
    parts.append(f"{note}Grey scale: {pictures['window'][0]:.4g} to {pictures['window'][1]:.4g} (the input's "
                 f"{GREY_PERCENTILES[0]:g}th to {GREY_PERCENTILES[1]:g}th percentiles); the subject's left is on "
                 "the left.</p></section>")
    rows = "".join(f'<tr data-fact="{key}"><th>{_escape(label)}</th><td>{_escape(text)}</td></tr>'
                   for key, label, text in fact_rows(facts))
    parts.append(f'<section id="facts"><h2>Facts of the run</h2><table class="facts">{rows}</table></section>')
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_report(path: str | os.PathLike, source: Volume, result: Volume, residual: np.ndarray | None,
                 record: dict, card: dict, overwrite: bool = False) -> Path:
    """Write the page of one run (``source`` upsampled to ``result``, its sidecar ``record`` and its model's
    ``card``) to ``path``, whole or not at all; an existing file is replaced only with ``overwrite``."""
    path = Path(path)
    refuse_existing([path], overwrite)
    require_imaging()
    facts = run_facts(source, result, record, card)
    page = render_page(facts, render_images(source, result, residual, facts))
    with atomic_file(path) as handle:
        handle.write(page.encode("utf-8"))
    return path


# ---------------------------------------------------------------------------
# The cohort index
# ---------------------------------------------------------------------------

def page_facts(path: str | os.PathLike) -> dict | None:
    """The facts embedded in a report page, or ``None`` if ``path`` is not one."""
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8", errors="replace")
    match = _FACTS_PATTERN.search(text)
    if match is None:
        return None
    try:
        facts = json.loads(match.group(1))
    except ValueError:
        return None
    return facts if isinstance(facts, dict) and "output" in facts else None


def _sidecar_facts(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"arssr_version", "output", "output_shape"} <= record.keys() else None


def index_entries(folder: str | os.PathLike) -> list[tuple[str | None, dict]]:
    """``(page name, facts)`` of each report page in ``folder``, and ``(None, record)`` of each sidecar there
    whose output has no page: the flagged ones first, each group by output name."""
    folder = Path(folder)
    entries = []
    for path in sorted(folder.glob("*.html")):
        if path.name != INDEX_NAME and not path.name.startswith("."):
            facts = page_facts(path)
            if facts is not None:
                entries.append((path.name, facts))
    paged = {str(facts.get("output")) for _, facts in entries}
    for path in sorted(folder.glob("*.json")):
        record = None if path.name.startswith(".") else _sidecar_facts(path)
        if record is not None and str(record["output"]) not in paged:
            entries.append((None, record))
    return sorted(entries, key=lambda entry: (not flags(entry[1]), Path(str(entry[1]["output"])).name,
                                              entry[0] or ""))


def render_index(entries: list[tuple[str | None, dict]], title: str) -> str:
    """The HTML of a cohort index: one row per entry of :func:`index_entries`."""
    flagged = sum(bool(flags(facts)) for _, facts in entries)
    rows = []
    for page, facts in entries:
        run_flags = flags(facts)
        name = _escape(Path(str(facts["output"])).name)
        link = ((lambda text: f'<a href="{_escape(quote(page))}">{text}</a>') if page else (lambda text: text))
        picture = facts.get("thumbnail")
        thumbnail = (link(f'<img src="{_escape(picture)}" alt="{name}">')
                     if isinstance(picture, str) and picture.startswith(THUMBNAIL_PREFIX) else "no page")
        flag_cells = ("<ul>" + "".join(f"<li>{_escape(flag)}</li>" for flag in run_flags) + "</ul>"
                      if run_flags else "none")
        memory = facts.get("peak_memory_mib")
        rows.append(
            f'<tr class="{"flagged" if run_flags else "clean"}"><td>{thumbnail}</td><td>{link(name)}<br>'
            f'<small>from {_escape(Path(str(facts.get("input"))).name)}</small></td><td>{flag_cells}</td>'
            f'<td class="number">{_escape(_number(facts.get("seconds"), 1))} s</td>'
            f'<td class="number">{"-" if memory is None else _escape(_number(memory, 0)) + " MiB"}</td></tr>')
    return "\n".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="arssr {_escape(__version__)}">',
        f"<title>arssr reports: {_escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>arssr reports: {_escape(title)}</h1><p>{len(entries)} file{'s' * (len(entries) != 1)}, "
        f"{flagged} flagged.</p>",
        f'<table class="index" id="{INDEX_ID}"><tr><th>Output centre</th><th>File</th><th>Flags</th><th>Time</th>'
        "<th>Peak memory</th></tr>",
        *rows,
        "</table></body></html>\n",
    ])


def _is_index(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return f'id="{INDEX_ID}"'.encode() in handle.read()
    except OSError:
        return False


def write_index(folder: str | os.PathLike, overwrite: bool = False) -> tuple[Path, int]:
    """Rebuild ``folder``'s ``index.html`` from the pages and sidecars present -> ``(path, rows)``.

    An earlier index is replaced; any other file of that name only with ``overwrite``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    entries = index_entries(folder)
    if not entries:
        raise InputError(f"{folder}: no arssr report pages or sidecars here")
    path = folder / INDEX_NAME
    if path.exists() and not overwrite and not _is_index(path):
        raise OutputExistsError(f"{path}: exists and is not an arssr index (use --overwrite to replace it)")
    with atomic_file(path) as handle:
        handle.write(render_index(entries, folder.resolve().name).encode("utf-8"))
    return path, len(entries)

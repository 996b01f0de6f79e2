"""Volume compression: downsample, fit a SIREN to the LR volume, quantise and code its weights.

Decoding evaluates the SIREN on the LR grid, then the SR model (any arssr
model file; default the shipped one the file names) brings it back to the original grid
(docs/explanation/geometry.md), intensities and dtype. The SR model is not
in the file: its name and sha256 are, and decoding refuses any other model.
The SR result is made consistent with the decoded LR by a detail gain and
band weights that the encoder fits against the original, separately inside
and outside the foreground found in the decoded LR (``decoding``).
At scale 1 no SR model is used (the SIREN alone, on the HR grid).

Intensities: the SIREN learns the LR volume normalised by the SR model's
intensity rule (``percentile`` for arssr's models; min-max at scale 1); the
window travels in the file, and decoded values are clipped to the original
``[min, max]`` and cast to the original dtype (float32 if the input was
stored with a scale slope).

With ``finetune="bias"`` (the end-to-end mode of the paper behind the
``paper-2025`` preset, docs/usage/compress.md, cut to what a file can
carry), the SIREN and the SR model's biases are then trained together
against the HR volume; the bias changes are quantised like the SIREN's
weights and go into the payload, so they count in the file's size. The file
keeps them only if the decoded volume is closer to the original with them
than with the SIREN as it was before that phase.

Rate is that of the real file: ``bpp = 8 * bytes / HR voxels``.

With ``lr_codec="sperr"`` SPERR codes the LR volume instead of a SIREN
(``lr_codec``, the table of such codecs, and ``sperr``); ``auto=True`` keeps whichever LR codec and scale
decode closest within a target bpp (``auto``).

Modules: ``config`` (settings and presets), ``fitting`` (the SIREN),
``finetune`` (end-to-end mode), ``codec`` (volume <-> metadata and payload),
``decoding`` (the SR result made consistent with the decoded LR, and its fit),
``rate`` (rate and quality of an encoding), ``search`` (one LR codec's file
within a target), ``lr_codec`` (the LR codecs other than the SIREN) and ``sperr`` (the SPERR LR codec), ``auto``, ``predict`` (the LR codec and
scale that ``arssr compress --target-bpp`` uses by default),
``container`` (the file format), ``quantize``, ``api`` (:func:`compress`,
:func:`decompress`) and ``sweep`` (the trade-off sweep).
"""

__all__ = ["PRESETS", "CompressionConfig", "compress", "compress_volume", "decompress", "make_config"]


def __getattr__(name: str):
    """The public names, imported on first use: the light modules (``lr_codec``, whose names the CLI's parser
    lists) import without torch."""
    if name in ("compress", "compress_volume", "decompress"):
        from arssr.compress import api

        return getattr(api, name)
    if name in ("PRESETS", "CompressionConfig", "make_config"):
        from arssr.compress import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

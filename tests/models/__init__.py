"""Tests of ``arssr.models``."""

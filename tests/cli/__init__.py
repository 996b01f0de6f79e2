"""Tests of ``arssr.cli``."""

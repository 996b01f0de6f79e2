"""Tests of ``arssr.compress``."""

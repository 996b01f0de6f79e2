"""Tests of ``arssr.evaluation``."""

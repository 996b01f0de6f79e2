"""Tests of ``arssr.training``."""

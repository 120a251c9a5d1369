"""Tests of motionnft.data."""

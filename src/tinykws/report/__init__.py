"""Figures and reports; matplotlib is imported by the functions that draw, never at import time."""

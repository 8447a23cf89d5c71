"""Figures (one style, one colour per factor) and the self-contained HTML report. No torch at import."""

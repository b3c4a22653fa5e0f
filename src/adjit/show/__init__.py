"""Ways to look at graphs and compiled functions."""

"""Everything that exists only for speed: training gives the same results without any of it.
"""

"""The HTTP service: the FastAPI app (``app``), the limits it puts on what clients send
(``limits``) and the drawing page (``web/``).
"""

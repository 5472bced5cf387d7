"""yolocompress."""

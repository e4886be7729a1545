"""Code that runs inside training / evaluation jobs (imports torch, torchtune, ...)."""

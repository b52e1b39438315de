"""Data: image I/O, MATLAB-exact resizing, test-set discovery."""

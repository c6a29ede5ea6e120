"""Console-script entry points; each parses its arguments and calls the library."""

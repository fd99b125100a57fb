"""Stand-ins for public U-Net code that is not an installable package (see each module)."""

"""Stand-ins for public sample images (same ports, paths and answers), run by the image catalog."""

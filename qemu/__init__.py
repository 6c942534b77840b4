"""Image build, QEMU runner and the lab world (host side and guest side)."""

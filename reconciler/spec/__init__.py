"""What the user declared: the fleet.yaml models, loader and expansion."""

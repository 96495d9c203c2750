"""Code shared by every service. Imports nothing from the services themselves."""

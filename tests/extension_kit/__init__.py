"""An extension package for the tests: what a site would write to add a rule kind and a driver
parkwatch does not ship, each one module (one folder) plus one line in :mod:`.registry`.

It is not shipped (it lives under tests/) and is loaded the way a site loads its own:
``PARKWATCH_EXTENSIONS=extension_kit.registry`` with this directory's parent on the path.
"""

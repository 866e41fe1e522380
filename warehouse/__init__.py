"""The lowest layer: settings, connections, the API's database models and migrations, the money core.

Nothing here imports the other Clearhouse packages.
"""

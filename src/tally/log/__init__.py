"""The log between collectors and the event store (scale-out): collectors append to it and
acknowledge clients once it has the events; loaders move them into the store (docs/scaling.md)."""

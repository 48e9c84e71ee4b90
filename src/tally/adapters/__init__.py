"""Protocol adapters: each turns one wire format into ``Event`` records and encodes its replies."""

"""Code that writes. Services ``flush()``; the request or CLI boundary commits once."""

"""The Minut side: the API client and typed views of its JSON."""

"""The Minut side: the API client, its tokens and request budget, typed views of its JSON."""

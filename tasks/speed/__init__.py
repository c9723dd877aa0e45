"""Speed tricks kept apart from the domain code: each names its measured effect and its off switch."""

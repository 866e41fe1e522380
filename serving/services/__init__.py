"""Business logic behind the routes: keyword-only functions with an explicit session."""

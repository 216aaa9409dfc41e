"""What accounts tells the apps that build on it, so that it imports none of them."""

from django.dispatch import Signal

# Sent inside the transaction that bulk-inserted `users` (bulk_create sends no post_save).
users_created = Signal()

from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """`?page=` and `?page_size=`, capped so no caller can ask for the whole table at once."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self):
        return settings.MAX_PAGE_SIZE

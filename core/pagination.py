from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """`?page=` and `?page_size=`, capped so no caller can ask for the whole table at once.

    A malformed value is a 400 naming the parameter (DRF would silently fall back to a default,
    which hides a client's bug); a page past the end stays DRF's 404."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self):
        return settings.MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        self._require_positive_integer(request, self.page_size_query_param)
        self._require_positive_integer(request, self.page_query_param, also=self.last_page_strings)
        return super().paginate_queryset(queryset, request, view)

    @staticmethod
    def _require_positive_integer(request, name, also=()):
        values = request.query_params.getlist(name)
        if not values:
            return
        if len(values) > 1:
            raise ValidationError({name: ["Give this parameter once."]})
        value = values[0]
        if value in also:
            return
        if not (value.isascii() and value.isdigit() and int(value) >= 1):
            raise ValidationError({name: ["Enter a whole number of at least 1."]})

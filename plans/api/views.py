from django.utils.decorators import method_decorator
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.filters import SearchFilter
from rest_framework.response import Response
from rest_framework.views import APIView

from core.filters import StrictOrderingFilter
from core.permissions import IsAdminOrReadOnly
from plans import selectors, services
from plans.api.filters import RechargePlanFilter
from plans.api.serializers import ProviderSerializer, RechargePlanInputSerializer, RechargePlanSerializer


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="providers_list", tags=["plans"]))
class ProviderListView(generics.ListAPIView):
    """Telecom operators (Airtel, Jio, Vi, BSNL, MTNL, ...) that plans are sold for."""

    serializer_class = ProviderSerializer
    filter_backends = [SearchFilter, StrictOrderingFilter]
    search_fields = ["name", "code"]
    ordering_fields = ["name", "code"]

    def get_queryset(self):
        return selectors.active_providers()


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="plans_list", tags=["plans"]))
class PlanListView(generics.ListAPIView):
    """Active recharge plans, with filters, search and ordering. Admins may add plans."""

    serializer_class = RechargePlanSerializer
    permission_classes = [IsAdminOrReadOnly]
    filterset_class = RechargePlanFilter
    search_fields = ["description", "data", "talktime"]
    ordering_fields = ["amount", "validity_days", "created_at"]
    ordering = ["provider__name", "amount", "id"]

    def get_queryset(self):
        return selectors.plans_for(user=self.request.user)

    @swagger_auto_schema(
        operation_id="plans_create",
        tags=["plans"],
        request_body=RechargePlanInputSerializer,
        responses={201: RechargePlanSerializer},
    )
    def post(self, request):
        serializer = RechargePlanInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        plan = services.create_plan(**serializer.validated_data)
        return Response(RechargePlanSerializer(plan).data, status=status.HTTP_201_CREATED)


class PlanDetailView(APIView):
    """One plan (retired ones too: purchases point at them). Admins change, retire or delete it.

    DELETE deletes a plan that was never sold and retires (`is_active: false`) one that purchases
    refer to; either way the answer is 204 and the plan disappears from the catalogue."""

    permission_classes = [IsAdminOrReadOnly]

    @swagger_auto_schema(operation_id="plans_read", tags=["plans"], responses={200: RechargePlanSerializer})
    def get(self, request, pk):
        return Response(RechargePlanSerializer(selectors.plan_by_id(pk=pk)).data)

    @swagger_auto_schema(
        operation_id="plans_update",
        tags=["plans"],
        request_body=RechargePlanInputSerializer,
        responses={200: RechargePlanSerializer},
    )
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @swagger_auto_schema(
        operation_id="plans_partial_update",
        tags=["plans"],
        request_body=RechargePlanInputSerializer,
        responses={200: RechargePlanSerializer},
    )
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    @swagger_auto_schema(operation_id="plans_delete", tags=["plans"], responses={204: "Deleted, or retired if sold."})
    def delete(self, request, pk):
        services.delete_or_retire_plan(plan=selectors.plan_by_id(pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request, pk, *, partial):
        plan = selectors.plan_by_id(pk=pk)
        serializer = RechargePlanInputSerializer(plan, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        plan = services.update_plan(plan=plan, **serializer.validated_data)
        return Response(RechargePlanSerializer(plan).data)

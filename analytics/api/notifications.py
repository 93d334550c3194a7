"""Operator notification channels over HTTP (reads for any signed-in user, changes for staff).

GET    /api/notifications/channels/            every channel (the URL never: where it comes from and its scheme)
POST   /api/notifications/channels/            {"name", "url" | "url_env", "min_severity", "enabled", "max_per_minute"}
                                               -> 201; a URL Apprise cannot send to -> 400 {"url": [reason]}
GET    /api/notifications/channels/<id>/       one channel
PUT    /api/notifications/channels/<id>/       replace it (url may be left out: the stored one is kept); PATCH
DELETE /api/notifications/channels/<id>/       remove it with its deliveries (disabling keeps them)
POST   /api/notifications/channels/<id>/test/  a test message -> 202 the delivery
GET    /api/notifications/deliveries/          one row per alert and channel (?channel= ?status= ?severity=
                                               ?event_id= ?trace_id=)
"""
from __future__ import annotations

import django_filters
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView, ListCreateAPIView, RetrieveUpdateDestroyAPIView
from rest_framework.permissions import SAFE_METHODS, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.models import DeliveryStatus, NotificationChannel, NotificationDelivery
from analytics.notifications import channels, dispatch
from core.enums import Severity

_SEVERITIES = [s.value for s in Severity]


class NotificationChannelSerializer(serializers.ModelSerializer):
    url = serializers.CharField(
        write_only=True, required=False, max_length=2000,
        help_text="An Apprise URL (json://host/path, tgram://token/chat, ...): stored encrypted, never returned")
    url_env = serializers.CharField(required=False, allow_blank=True, max_length=128,
                                    help_text="or: the environment variable holding the URL (on the ops worker)")
    url_source = serializers.SerializerMethodField(help_text="where the URL comes from, and its scheme")
    state = serializers.SerializerMethodField(help_text="ok, failing, unused or disabled")
    min_severity = serializers.ChoiceField(choices=_SEVERITIES, required=False)

    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "url", "url_env", "url_source", "min_severity", "enabled", "max_per_minute", "state",
                  "last_success_at", "last_error", "last_error_at"]
        read_only_fields = ["last_success_at", "last_error", "last_error_at"]

    def get_url_source(self, obj) -> str:
        return channels.url_source(obj)

    def get_state(self, obj) -> str:
        return channels.channel_state(obj)

    def validate_url(self, value):
        try:
            return channels.validate_url(value)
        except channels.ChannelConfigError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_url_env(self, value):
        if not value.strip():
            return ""
        try:
            return channels.validate_env_name(value)
        except channels.ChannelConfigError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        url, url_env = attrs.get("url"), attrs.get("url_env")
        if url and url_env:
            raise serializers.ValidationError(
                {"url": ["url: give either url (stored encrypted) or url_env (an environment variable), not both"]})
        if url or url_env:
            return attrs
        if self.instance is None:
            has_source = False
        elif "url_env" in attrs:  # url_env cleared: the stored URL must remain
            has_source = bool(self.instance.url_encrypted)
        else:
            has_source = bool(self.instance.url_encrypted or self.instance.url_env)
        if not has_source:
            raise serializers.ValidationError(
                {"url": ["url: required (or url_env, the environment variable that holds it)"]})
        return attrs

    def _apply(self, channel: NotificationChannel, attrs: dict) -> NotificationChannel:
        url, url_env = attrs.pop("url", None), attrs.pop("url_env", None)
        for field, value in attrs.items():
            setattr(channel, field, value)
        if url:
            channels.apply_url(channel, url=url)
        elif url_env:
            channels.apply_url(channel, url_env=url_env)
        elif url_env == "" and channel.url_env:  # cleared, with a stored URL to fall back on (checked above)
            channel.url_env = ""
        if channel.pk is None:
            channel.save()
        else:  # the workers write the outcome fields at any time: only what the API edits is written
            channel.save(update_fields=channels.EDITABLE_FIELDS)
        return channel

    def create(self, validated_data):
        validated_data.setdefault("min_severity", channels.default_min_severity().value)
        return self._apply(NotificationChannel(), validated_data)

    def update(self, instance, validated_data):
        return self._apply(instance, validated_data)


class _StaffWrites:
    def get_permissions(self):  # reads for any signed-in user, changes for staff (as the learning API)
        return [IsAuthenticated()] if self.request.method in SAFE_METHODS else [IsAdminUser()]


class NotificationChannelListView(_StaffWrites, ListCreateAPIView):
    serializer_class = NotificationChannelSerializer

    def get_queryset(self):
        return channels.channel_list()


class NotificationChannelDetailView(_StaffWrites, RetrieveUpdateDestroyAPIView):
    serializer_class = NotificationChannelSerializer

    def get_queryset(self):
        return channels.channel_list()


class NotificationDeliverySerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = ["id", "channel", "channel_name", "event_id", "severity", "title", "body", "status", "attempts",
                  "next_attempt_at", "last_error", "created_at", "sent_at", "trace_id"]


class NotificationChannelTestView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={202: NotificationDeliverySerializer})
    def post(self, request, pk: int):
        channel = get_object_or_404(channels.channel_list(), pk=pk)
        delivery = dispatch.send_test(channel, requested_by=request.user.get_username())
        return Response(NotificationDeliverySerializer(delivery).data, status=202)


class NotificationDeliveryFilter(django_filters.FilterSet):
    channel = django_filters.CharFilter(method="filter_channel", help_text="a channel id or name")
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    severity = django_filters.ChoiceFilter(choices=[(s, s) for s in _SEVERITIES])
    event_id = django_filters.UUIDFilter()
    trace_id = django_filters.CharFilter()

    class Meta:
        model = NotificationDelivery
        fields = ["channel", "status", "severity", "event_id", "trace_id"]

    def filter_channel(self, queryset, name, value):
        return queryset.filter(channel_id=int(value)) if value.isdigit() else queryset.filter(channel__name=value)


class NotificationDeliveryListView(ListAPIView):
    serializer_class = NotificationDeliverySerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = NotificationDeliveryFilter

    def get_queryset(self):
        return channels.delivery_list()

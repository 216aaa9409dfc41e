# Production image: gunicorn on config.wsgi, static files served by whitenoise.
# Configure with the environment variables in README.md ("Production"); run migrations with
#   docker run --rm --env-file prod.env IMAGE python manage.py migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    WEB_CONCURRENCY=2 \
    GUNICORN_TIMEOUT=60 \
    TRUSTED_PROXY_COUNT=0 \
    FORWARDED_ALLOW_IPS="127.0.0.1,::1"
# Behind N proxies that append to X-Forwarded-For, set TRUSTED_PROXY_COUNT=N (the app's client address:
# throttles, OTP limits, login lockout) and FORWARDED_ALLOW_IPS to the address(es) of the proxy that
# connects to gunicorn (the only peer whose X-Forwarded-* headers gunicorn honours). The defaults
# trust no header: every limit is per socket peer.

WORKDIR /app
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The key only satisfies the settings module during the build; nothing is signed with it.
RUN DEBUG=false SECRET_KEY=collectstatic-build-only-not-a-secret-0123456789abcdefghijklmnop \
    python manage.py collectstatic --noinput \
 && chown -R app:app /app

USER app
EXPOSE 8000
CMD ["sh", "-c", "exec gunicorn config.wsgi:application --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY} --timeout ${GUNICORN_TIMEOUT} --limit-request-line 8190 --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS}\" --access-logfile -"]

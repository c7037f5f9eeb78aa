"""The emulated org's credentials: fixed, documented values (the emulator guards nothing real)."""

CLIENT_ID = "emulator-client-id"
CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a public test value, not a secret
REFRESH_TOKEN = "emulator-refresh-token"  # noqa: S105
USERNAME = "integration@emulator.example"
PASSWORD = "emulator-password"  # noqa: S105
SECURITY_TOKEN = "emulator-security-token"  # noqa: S105

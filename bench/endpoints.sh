# Endpoints `make bench` drives, sourced by scripts/bench.sh ("name|path|header").
# Each component appends its own.
ENDPOINTS+=(
  "password_16_all_classes|/api/v1/passwords?password_length=16&password_numbers=true&password_lower_case_chars=true&password_upper_case_chars=true&password_special_symbols=true|"
  "passphrase_6_words|/api/v1/passwords?mode=passphrase&words=6|"
)

# An authenticated GET of a small resource (API key on the cached hot path). The key is made by
# scripts/bench.sh with the admin secret and exported as BENCH_API_KEY.
if [ -n "${BENCH_API_KEY:-}" ]; then
  ENDPOINTS+=("whoami_with_api_key|/api/v1/auth/whoami|X-API-Key: ${BENCH_API_KEY}")
fi

# Packages: GET one and list 50 with a valid key. BENCH_PACKAGE_ID is made by scripts/bench.sh.
if [ -n "${BENCH_PACKAGE_ID:-}" ]; then
  ENDPOINTS+=("get_package_with_api_key|/api/v1/packages/${BENCH_PACKAGE_ID}|X-API-Key: ${BENCH_API_KEY}")
  ENDPOINTS+=("list_50_packages_with_api_key|/api/v1/packages?limit=50|X-API-Key: ${BENCH_API_KEY}")
fi

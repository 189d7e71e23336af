# Endpoints `make bench` drives, sourced by scripts/bench.sh ("name|path|extra wrk args").
# Each component appends its own.
ENDPOINTS+=(
  "password_16_all_classes|/api/v1/passwords?password_length=16&password_numbers=true&password_lower_case_chars=true&password_upper_case_chars=true&password_special_symbols=true|"
  "passphrase_6_words|/api/v1/passwords?mode=passphrase&words=6|"
)

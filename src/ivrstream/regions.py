"""Genesys Cloud regions: name → domain (from Genesys' published region list).

``GENESYS_ENV`` may name a region (``us-east-1``, ``us_east_1``) or a domain (``mypurecloud.ie``).
Hosts follow the domain: ``login.{domain}`` for OAuth, ``api.{domain}`` for REST,
``streaming.{domain}`` for notification sockets.
"""

from __future__ import annotations

REGIONS: dict[str, str] = {
    "us_east_1": "mypurecloud.com",
    "eu_west_1": "mypurecloud.ie",
    "ap_southeast_2": "mypurecloud.com.au",
    "ap_northeast_1": "mypurecloud.jp",
    "eu_central_1": "mypurecloud.de",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "ap_northeast_2": "apne2.pure.cloud",
    "eu_west_2": "euw2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "us_east_2": "use2.us-gov-pure.cloud",
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "eu_central_2": "euc2.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
    "eusc_de_east_1": "edee1.eusc-pure.cloud",
}


def domain_for(name: str) -> str | None:
    """The domain for a region name or domain (case and ``-``/``_`` insensitive), else None."""
    key = name.strip().lower().replace("-", "_")
    if key in REGIONS:
        return REGIONS[key]
    domain = name.strip().lower().removeprefix("https://").removeprefix("api.").rstrip("/")
    return domain if domain in REGIONS.values() else None

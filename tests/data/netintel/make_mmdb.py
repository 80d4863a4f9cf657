#!/usr/bin/env python3
"""Writes the small MaxMind DB fixtures the netintel tests read.

    pip install --target /tmp/py mmdb-writer && PYTHONPATH=/tmp/py python3 make_mmdb.py

The places and owners are made up for the tests (the addresses are
documentation and ordinary public ranges; nothing here is real data).
Output: city.mmdb (GeoIP2-City layout) and asn.mmdb (GeoLite2-ASN layout);
city-v4.mmdb, the same places in an IPv4-only database, and asn-v6.mmdb, an
IPv6 database without an IPv4 subtree whose one record covers ::/1 (so
every IPv4 address), for the flattened IPv4 table's other tree shapes;
country-code.mmdb, the countries alone in ip-location-db's layout (a
top-level country_code, as `keywatch netintel update` fetches it).
"""

import os

from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32
from netaddr import IPSet

HERE = os.path.dirname(os.path.abspath(__file__))

# network: (country, city, lat, lon, accuracy km, asn, organisation)
PLACES = {
    "81.0.0.0/16": ("DE", "Berlin", 52.52, 13.40, 20, 3320, "Deutsche Telekom AG"),
    "81.1.0.0/16": ("DE", "Munich", 48.14, 11.58, 20, 3320, "Deutsche Telekom AG"),
    "101.0.0.0/16": ("AU", "Sydney", -33.87, 151.21, 50, 1221, "Telstra Corporation Ltd"),
    "24.0.0.0/16": ("US", "Chicago", 41.88, -87.63, 10, 7922, "Comcast Cable Communications, LLC"),
    "3.80.0.0/12": ("US", "Ashburn", 39.04, -77.49, 1000, 14618, "AMAZON-AES"),
    "3.208.0.0/12": ("US", "Ashburn", 39.04, -77.49, 1000, 14618, "AMAZON-AES"),
    "54.144.0.0/14": ("US", "Ashburn", 39.04, -77.49, 1000, 14618, "AMAZON-AES"),
    "13.48.0.0/15": ("SE", "Stockholm", 59.33, 18.07, 1000, 16509, "AMAZON-02"),
    "185.220.101.0/24": ("DE", "Frankfurt", 50.11, 8.68, 100, 208294, "Foundation for Applied Privacy"),
    "45.0.0.0/16": ("NL", "Amsterdam", 52.37, 4.90, 50, 9009, "ExampleHost Hosting B.V."),
    "198.51.100.0/24": ("FR", "Paris", 48.86, 2.35, 20, 64500, "Example Corp VPN egress"),
    # One /24 in two halves of different owners and places: the block cache
    # must answer each half on its own.
    "81.2.5.0/25": ("DE", "Hamburg", 53.55, 9.99, 20, 3320, "Deutsche Telekom AG"),
    "81.2.5.128/25": ("DE", "Dresden", 51.05, 13.74, 20, 6805, "Telefonica Germany"),
}


def main():
    city = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City",
                      languages=["en"], description={"en": "keywatch test fixture"})
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                     languages=["en"], description={"en": "keywatch test fixture"})
    for net, (cc, name, lat, lon, acc, num, org) in PLACES.items():
        city.insert_network(IPSet([net]), {
            "city": {"names": {"en": name}},
            "country": {"iso_code": cc, "names": {"en": cc}},
            "registered_country": {"iso_code": cc},
            "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon),
                         "accuracy_radius": MmdbU16(acc)},
        })
        asn.insert_network(IPSet([net]), {
            "autonomous_system_number": MmdbU32(num),
            "autonomous_system_organization": org,
        })
    city.to_db_file(os.path.join(HERE, "city.mmdb"))
    asn.to_db_file(os.path.join(HERE, "asn.mmdb"))
    city4 = MMDBWriter(ip_version=4, database_type="GeoIP2-City",
                       languages=["en"], description={"en": "keywatch test fixture"})
    for net, (cc, name, lat, lon, acc, _, _) in PLACES.items():
        city4.insert_network(IPSet([net]), {
            "country": {"iso_code": cc},
            "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon),
                         "accuracy_radius": MmdbU16(acc)},
        })
    city4.to_db_file(os.path.join(HERE, "city-v4.mmdb"))
    asn6 = MMDBWriter(ip_version=6, ipv4_compatible=False, database_type="GeoLite2-ASN",
                      languages=["en"], description={"en": "keywatch test fixture"})
    asn6.insert_network(IPSet(["::/1"]), {
        "autonomous_system_number": MmdbU32(64496),
        "autonomous_system_organization": "Example Wide Net",
    })
    asn6.to_db_file(os.path.join(HERE, "asn-v6.mmdb"))
    country = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="country ipvAll",
                         languages=["en"], description={"en": "keywatch test fixture"})
    for net, (cc, *_rest) in PLACES.items():
        country.insert_network(IPSet([net]), {"country_code": cc})
    country.to_db_file(os.path.join(HERE, "country-code.mmdb"))


if __name__ == "__main__":
    main()

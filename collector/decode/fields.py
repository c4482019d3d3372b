"""The subset of the IANA IPFIX Information Element registry egress knows by name.

Numbers below 128 are shared with NetFlow v9 (RFC 3954 field types); IPFIX (RFC 7012)
reuses them with the same meaning. Only elements the decoder uses, or that help a
human read a template dump, are listed; any other element is carried by its length
and skipped. Enterprise-specific elements (enterprise bit set, RFC 7011 §3.2) are never
interpreted, whatever their number.

Each entry: element id -> (IANA name, abstract data type, the length the decoder
expects or accepts). "unsigned" elements accept reduced-size encoding (RFC 7011 §6.2):
any length from 1 to 8 bytes, big-endian.
"""

from __future__ import annotations

# Abstract data types (RFC 7012 §3.1), reduced to what the decoder distinguishes.
UNSIGNED = "unsigned"
IPV4 = "ipv4Address"
IPV6 = "ipv6Address"
DATETIME_S = "dateTimeSeconds"
DATETIME_MS = "dateTimeMilliseconds"
DATETIME_US = "dateTimeMicroseconds"  # NTP-format 64 bits (RFC 7011 §6.1.9)
DATETIME_NS = "dateTimeNanoseconds"  # NTP-format 64 bits (RFC 7011 §6.1.10)
STRING = "string"
OCTETS = "octetArray"
MAC = "macAddress"

OCTET_DELTA_COUNT = 1
PACKET_DELTA_COUNT = 2
PROTOCOL_IDENTIFIER = 4
SOURCE_TRANSPORT_PORT = 7
SOURCE_IPV4_ADDRESS = 8
INGRESS_INTERFACE = 10
DESTINATION_TRANSPORT_PORT = 11
DESTINATION_IPV4_ADDRESS = 12
EGRESS_INTERFACE = 14
FLOW_END_SYS_UP_TIME = 21
FLOW_START_SYS_UP_TIME = 22
POST_OCTET_DELTA_COUNT = 23
POST_PACKET_DELTA_COUNT = 24
SOURCE_IPV6_ADDRESS = 27
DESTINATION_IPV6_ADDRESS = 28
SAMPLING_INTERVAL = 34
SAMPLING_ALGORITHM = 35
SAMPLER_ID = 48
SAMPLER_MODE = 49
SAMPLER_RANDOM_INTERVAL = 50
VLAN_ID = 58
POST_VLAN_ID = 59
IP_VERSION = 60
FLOW_DIRECTION = 61
SAMPLER_NAME = 84
OCTET_TOTAL_COUNT = 85
PACKET_TOTAL_COUNT = 86
OBSERVATION_DOMAIN_ID = 149
FLOW_START_SECONDS = 150
FLOW_END_SECONDS = 151
FLOW_START_MILLISECONDS = 152
FLOW_END_MILLISECONDS = 153
FLOW_START_MICROSECONDS = 154
FLOW_END_MICROSECONDS = 155
FLOW_START_NANOSECONDS = 156
FLOW_END_NANOSECONDS = 157
FLOW_START_DELTA_MICROSECONDS = 158
FLOW_END_DELTA_MICROSECONDS = 159
SYSTEM_INIT_TIME_MILLISECONDS = 160
FLOW_DURATION_MILLISECONDS = 161
FLOW_DURATION_MICROSECONDS = 162
DOT1Q_VLAN_ID = 243
SELECTOR_ID = 302
SELECTOR_ALGORITHM = 304
SAMPLING_PACKET_INTERVAL = 305
SAMPLING_PACKET_SPACE = 306
SAMPLING_SIZE = 309
SAMPLING_POPULATION = 310

ELEMENTS: dict[int, tuple[str, str]] = {
    OCTET_DELTA_COUNT: ("octetDeltaCount", UNSIGNED),
    PACKET_DELTA_COUNT: ("packetDeltaCount", UNSIGNED),
    3: ("deltaFlowCount", UNSIGNED),
    PROTOCOL_IDENTIFIER: ("protocolIdentifier", UNSIGNED),
    5: ("ipClassOfService", UNSIGNED),
    6: ("tcpControlBits", UNSIGNED),
    SOURCE_TRANSPORT_PORT: ("sourceTransportPort", UNSIGNED),
    SOURCE_IPV4_ADDRESS: ("sourceIPv4Address", IPV4),
    9: ("sourceIPv4PrefixLength", UNSIGNED),
    INGRESS_INTERFACE: ("ingressInterface", UNSIGNED),
    DESTINATION_TRANSPORT_PORT: ("destinationTransportPort", UNSIGNED),
    DESTINATION_IPV4_ADDRESS: ("destinationIPv4Address", IPV4),
    13: ("destinationIPv4PrefixLength", UNSIGNED),
    EGRESS_INTERFACE: ("egressInterface", UNSIGNED),
    15: ("ipNextHopIPv4Address", IPV4),
    16: ("bgpSourceAsNumber", UNSIGNED),
    17: ("bgpDestinationAsNumber", UNSIGNED),
    18: ("bgpNextHopIPv4Address", IPV4),
    FLOW_END_SYS_UP_TIME: ("flowEndSysUpTime", UNSIGNED),
    FLOW_START_SYS_UP_TIME: ("flowStartSysUpTime", UNSIGNED),
    POST_OCTET_DELTA_COUNT: ("postOctetDeltaCount", UNSIGNED),
    POST_PACKET_DELTA_COUNT: ("postPacketDeltaCount", UNSIGNED),
    SOURCE_IPV6_ADDRESS: ("sourceIPv6Address", IPV6),
    DESTINATION_IPV6_ADDRESS: ("destinationIPv6Address", IPV6),
    29: ("sourceIPv6PrefixLength", UNSIGNED),
    30: ("destinationIPv6PrefixLength", UNSIGNED),
    31: ("flowLabelIPv6", UNSIGNED),
    32: ("icmpTypeCodeIPv4", UNSIGNED),
    SAMPLING_INTERVAL: ("samplingInterval", UNSIGNED),
    SAMPLING_ALGORITHM: ("samplingAlgorithm", UNSIGNED),
    36: ("flowActiveTimeout", UNSIGNED),
    37: ("flowIdleTimeout", UNSIGNED),
    SAMPLER_ID: ("samplerId", UNSIGNED),
    SAMPLER_MODE: ("samplerMode", UNSIGNED),
    SAMPLER_RANDOM_INTERVAL: ("samplerRandomInterval", UNSIGNED),
    56: ("sourceMacAddress", MAC),
    57: ("postDestinationMacAddress", MAC),
    VLAN_ID: ("vlanId", UNSIGNED),
    POST_VLAN_ID: ("postVlanId", UNSIGNED),
    IP_VERSION: ("ipVersion", UNSIGNED),
    FLOW_DIRECTION: ("flowDirection", UNSIGNED),
    62: ("ipNextHopIPv6Address", IPV6),
    SAMPLER_NAME: ("samplerName", STRING),
    OCTET_TOTAL_COUNT: ("octetTotalCount", UNSIGNED),
    PACKET_TOTAL_COUNT: ("packetTotalCount", UNSIGNED),
    89: ("forwardingStatus", UNSIGNED),
    130: ("exporterIPv4Address", IPV4),
    131: ("exporterIPv6Address", IPV6),
    136: ("flowEndReason", UNSIGNED),
    144: ("exportingProcessId", UNSIGNED),
    OBSERVATION_DOMAIN_ID: ("observationDomainId", UNSIGNED),
    FLOW_START_SECONDS: ("flowStartSeconds", DATETIME_S),
    FLOW_END_SECONDS: ("flowEndSeconds", DATETIME_S),
    FLOW_START_MILLISECONDS: ("flowStartMilliseconds", DATETIME_MS),
    FLOW_END_MILLISECONDS: ("flowEndMilliseconds", DATETIME_MS),
    FLOW_START_MICROSECONDS: ("flowStartMicroseconds", DATETIME_US),
    FLOW_END_MICROSECONDS: ("flowEndMicroseconds", DATETIME_US),
    FLOW_START_NANOSECONDS: ("flowStartNanoseconds", DATETIME_NS),
    FLOW_END_NANOSECONDS: ("flowEndNanoseconds", DATETIME_NS),
    FLOW_START_DELTA_MICROSECONDS: ("flowStartDeltaMicroseconds", UNSIGNED),
    FLOW_END_DELTA_MICROSECONDS: ("flowEndDeltaMicroseconds", UNSIGNED),
    SYSTEM_INIT_TIME_MILLISECONDS: ("systemInitTimeMilliseconds", DATETIME_MS),
    FLOW_DURATION_MILLISECONDS: ("flowDurationMilliseconds", UNSIGNED),
    FLOW_DURATION_MICROSECONDS: ("flowDurationMicroseconds", UNSIGNED),
    DOT1Q_VLAN_ID: ("dot1qVlanId", UNSIGNED),
    SELECTOR_ID: ("selectorId", UNSIGNED),
    SELECTOR_ALGORITHM: ("selectorAlgorithm", UNSIGNED),
    SAMPLING_PACKET_INTERVAL: ("samplingPacketInterval", UNSIGNED),
    SAMPLING_PACKET_SPACE: ("samplingPacketSpace", UNSIGNED),
    SAMPLING_SIZE: ("samplingSize", UNSIGNED),
    SAMPLING_POPULATION: ("samplingPopulation", UNSIGNED),
}

# The elements a flow or options record is read for, and the lengths accepted for each
# (anything else is skipped as if unknown, and counted by the decoder).
WANTED: dict[int, tuple[int, ...]] = {
    **{
        ie: (1, 2, 3, 4, 5, 6, 7, 8)
        for ie in (
            OCTET_DELTA_COUNT,
            PACKET_DELTA_COUNT,
            POST_OCTET_DELTA_COUNT,
            POST_PACKET_DELTA_COUNT,
            OCTET_TOTAL_COUNT,
            PACKET_TOTAL_COUNT,
            INGRESS_INTERFACE,
            EGRESS_INTERFACE,
            SAMPLING_INTERVAL,
            SAMPLING_ALGORITHM,
            SAMPLER_ID,
            SAMPLER_MODE,
            SAMPLER_RANDOM_INTERVAL,
            VLAN_ID,
            DOT1Q_VLAN_ID,
            IP_VERSION,
            FLOW_DIRECTION,
            FLOW_END_SYS_UP_TIME,
            FLOW_START_SYS_UP_TIME,
            FLOW_START_SECONDS,
            FLOW_END_SECONDS,
            FLOW_START_MILLISECONDS,
            FLOW_END_MILLISECONDS,
            FLOW_START_DELTA_MICROSECONDS,
            FLOW_END_DELTA_MICROSECONDS,
            SYSTEM_INIT_TIME_MILLISECONDS,
            FLOW_DURATION_MILLISECONDS,
            FLOW_DURATION_MICROSECONDS,
            SELECTOR_ID,
            SAMPLING_PACKET_INTERVAL,
            SAMPLING_PACKET_SPACE,
            SAMPLING_SIZE,
            SAMPLING_POPULATION,
        )
    },
    SOURCE_IPV4_ADDRESS: (4,),
    DESTINATION_IPV4_ADDRESS: (4,),
    SOURCE_IPV6_ADDRESS: (16,),
    DESTINATION_IPV6_ADDRESS: (16,),
    FLOW_START_MICROSECONDS: (8,),
    FLOW_END_MICROSECONDS: (8,),
    FLOW_START_NANOSECONDS: (8,),
    FLOW_END_NANOSECONDS: (8,),
}


def element_name(element_id: int, enterprise: int = 0) -> str:
    """IANA name of an element, or a neutral label for unknown/enterprise ones."""
    if enterprise:
        return f"enterprise{enterprise}_{element_id}"
    known = ELEMENTS.get(element_id)
    return known[0] if known else f"element{element_id}"

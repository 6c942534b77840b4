"""Hypothesis strategies for every Mobile IP message and extension (reusable by other tests).

Everything generated here is encodable: ``encode(x)`` succeeds and
``decode(encode(x)) == x``. Names: ``<thing>s`` is a strategy for ``<thing>``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import strategies as st

from router.mip.advert import (
    AdvertisementChallenge,
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentAdvertisement,
    PrefixLengths,
    RouterAddress,
)
from router.mip.extensions import (
    EncapsulatingDeliveryStyle,
    ExtensionType,
    ForeignHomeAuth,
    GeneralizedAuth,
    MessageString,
    MobileForeignAuth,
    MobileForeignChallenge,
    MobileHomeAuth,
    MobileNetworkAck,
    MobileNetworkRequest,
    MobileNodeNAI,
    OneBytePadding,
    RevocationSupport,
    TrustedNetworksConfigured,
    UDPTunnelReply,
    UDPTunnelRequest,
    UnknownExtension,
)
from router.mip.messages import (
    RegistrationReply,
    RegistrationRequest,
    RegistrationRevocation,
    RequestFlags,
    RevocationAcknowledgement,
    TunnelData,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
i32 = st.integers(-(2**31), 2**31 - 1)

addresses = st.builds(IPv4Address, u32)
networks = st.builds(
    lambda address, length: IPv4Network((address, length), strict=False), u32, st.integers(0, 32)
)
# Up to 60 code points of at most 4 UTF-8 bytes each stay within a 1-byte Length;
# surrogates are excluded because they have no UTF-8 encoding.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
authenticators = st.binary(max_size=251)  # Length = 4 + len(authenticator) <= 255

# Types a control message decodes into a dedicated class (everything else: UnknownExtension).
KNOWN_CONTROL_TYPES = frozenset(
    {
        ExtensionType.ONE_BYTE_PADDING,
        ExtensionType.MOBILE_HOME_AUTHENTICATION,
        ExtensionType.MOBILE_FOREIGN_AUTHENTICATION,
        ExtensionType.FOREIGN_HOME_AUTHENTICATION,
        ExtensionType.GENERALIZED_AUTHENTICATION,
        ExtensionType.UDP_TUNNEL_REPLY,
        ExtensionType.ENCAPSULATING_DELIVERY_STYLE,
        ExtensionType.MOBILE_NODE_NAI,
        ExtensionType.MOBILE_FOREIGN_CHALLENGE,
        ExtensionType.REVOCATION_SUPPORT,
        ExtensionType.UDP_TUNNEL_REQUEST,
        ExtensionType.MESSAGE_STRING,
        ExtensionType.MOBILE_NETWORK,
        ExtensionType.TRUSTED_NETWORKS_CONFIGURED,
    }
)
KNOWN_ADVERT_TYPES = frozenset(
    {
        ExtensionType.ONE_BYTE_PADDING,
        ExtensionType.MOBILITY_AGENT_ADVERTISEMENT,
        ExtensionType.PREFIX_LENGTHS,
        ExtensionType.CHALLENGE,
    }
)

# Sub-types the codec knows, per short-format type (anything else stays unknown).
_KNOWN_SUBTYPES = {
    ExtensionType.MOBILE_NETWORK: {0, 1, 2},
    ExtensionType.UDP_TUNNEL_REQUEST: {0},
    ExtensionType.UDP_TUNNEL_REPLY: {0},
    ExtensionType.MESSAGE_STRING: {1},
    ExtensionType.TRUSTED_NETWORKS_CONFIGURED: {0},
}

# -- control message extensions ---------------------------------------------------

mobile_home_auths = st.builds(MobileHomeAuth, u32, authenticators)
mobile_foreign_auths = st.builds(MobileForeignAuth, u32, authenticators)
foreign_home_auths = st.builds(ForeignHomeAuth, u32, authenticators)
generalized_auths = st.builds(GeneralizedAuth, u8, u32, st.binary(max_size=300))
nais = st.builds(MobileNodeNAI, texts)
challenges = st.builds(MobileForeignChallenge, st.binary(max_size=255))
revocation_supports = st.builds(RevocationSupport, st.booleans(), u32)
udp_tunnel_requests = st.builds(UDPTunnelRequest, st.booleans(), st.booleans(), u8)
udp_tunnel_replies = st.builds(UDPTunnelReply, u8, st.booleans(), u16)
message_strings = st.builds(MessageString, texts)
mobile_network_requests = st.builds(MobileNetworkRequest, networks)
mobile_network_acks = st.builds(MobileNetworkAck, u8, networks, st.booleans())


@st.composite
def unknown_extensions(draw: st.DrawFn) -> UnknownExtension:
    """An unknown type, or a known short-format type with an unknown sub-type."""
    if draw(st.booleans()):
        ext_type = draw(st.integers(1, 255).filter(lambda t: t not in KNOWN_CONTROL_TYPES))
        return UnknownExtension(ext_type, draw(st.binary(max_size=255)))
    ext_type = draw(st.sampled_from(sorted(_KNOWN_SUBTYPES)))
    if ext_type == ExtensionType.UDP_TUNNEL_REQUEST and draw(st.booleans()):
        # RFC 3519 3.1.3: sub-type 0 with non-zero Reserved 3 is "not understood".
        head = draw(st.binary(min_size=3, max_size=3))
        reserved3 = draw(st.integers(1, 0xFFFF)).to_bytes(2, "big")
        return UnknownExtension(ext_type, b"\x00" + head + reserved3)
    subtype = draw(u8.filter(lambda s: s not in _KNOWN_SUBTYPES[ext_type]))
    return UnknownExtension(ext_type, bytes([subtype]) + draw(st.binary(max_size=254)))


control_extensions = st.one_of(
    st.just(OneBytePadding()),
    mobile_home_auths,
    mobile_foreign_auths,
    foreign_home_auths,
    generalized_auths,
    st.just(EncapsulatingDeliveryStyle()),
    nais,
    challenges,
    revocation_supports,
    udp_tunnel_requests,
    udp_tunnel_replies,
    message_strings,
    mobile_network_requests,
    mobile_network_acks,
    st.just(TrustedNetworksConfigured()),
    unknown_extensions(),
)
extension_tuples = st.lists(control_extensions, max_size=6).map(tuple)

# -- control messages --------------------------------------------------------------

registration_requests = st.builds(
    RegistrationRequest,
    st.builds(RequestFlags, u8),
    u16,
    addresses,
    addresses,
    addresses,
    u64,
    extension_tuples,
)
registration_replies = st.builds(
    RegistrationReply, u8, u16, addresses, addresses, u64, extension_tuples
)
registration_revocations = st.builds(
    RegistrationRevocation,
    addresses,
    addresses,
    addresses,
    u32,
    st.booleans(),
    st.booleans(),
    extension_tuples,
)
revocation_acknowledgements = st.builds(
    RevocationAcknowledgement, addresses, u32, st.booleans(), extension_tuples
)
tunnel_data = st.builds(TunnelData, u8, st.binary(max_size=64))

messages = st.one_of(
    registration_requests,
    registration_replies,
    registration_revocations,
    revocation_acknowledgements,
    tunnel_data,
)

# -- ICMP agent discovery ------------------------------------------------------------

router_addresses = st.builds(RouterAddress, addresses, i32)
mobility_agent_advertisements = st.builds(
    MobilityAgentAdvertisement,
    u16,
    u16,
    st.builds(AdvertisementFlags, u16),
    st.lists(addresses, max_size=8).map(tuple),
)
prefix_lengths = st.builds(PrefixLengths, st.lists(u8, max_size=8).map(tuple))
advertisement_challenges = st.builds(AdvertisementChallenge, st.binary(max_size=255))
unknown_advert_extensions = st.builds(
    UnknownExtension,
    st.integers(1, 255).filter(lambda t: t not in KNOWN_ADVERT_TYPES),
    st.binary(max_size=255),
)
advert_extensions = st.one_of(
    mobility_agent_advertisements,
    prefix_lengths,
    advertisement_challenges,
    st.just(OneBytePadding()),
    unknown_advert_extensions,
)
agent_advertisements = st.builds(
    AgentAdvertisement,
    u16,
    st.lists(router_addresses, max_size=4).map(tuple),
    st.lists(advert_extensions, max_size=4).map(tuple),
    u8,
)
icmp_messages = st.one_of(agent_advertisements, st.just(AgentSolicitation()))

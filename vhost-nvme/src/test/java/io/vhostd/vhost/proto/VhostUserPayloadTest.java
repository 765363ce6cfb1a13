package io.vhostd.vhost.proto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every payload codec: good and bad sizes (table-driven), round trips, and each syntax rule. */
@Timeout(value = 10, unit = TimeUnit.SECONDS)
class VhostUserPayloadTest {
    private static final int REQ = 77;

    private static final VhostUserMemoryRegion REGION =
            new VhostUserMemoryRegion(0x1_0000_0000L, 0x4000_0000L, 0x7f00_0000_0000L, 0x1000);

    /** A payload type: its decoder, a valid sample, and the sizes that must be rejected. */
    private record Codec(
            String name, BiFunction<Integer, MemorySegment, VhostUserPayload> decoder, VhostUserPayload sample) {}

    private static List<Codec> codecs() {
        byte[] config = new byte[60];
        Arrays.fill(config, (byte) 0x5a);
        return List.of(
                new Codec("VhostUserU64", VhostUserU64::decode, new VhostUserU64(0x1_2345_6789L)),
                new Codec("VhostUserVringFd", VhostUserVringFd::decode, new VhostUserVringFd(7, true)),
                new Codec("VhostUserVringState", VhostUserVringState::decode, new VhostUserVringState(1, 256)),
                new Codec(
                        "VhostUserVringAddr",
                        VhostUserVringAddr::decode,
                        new VhostUserVringAddr(1, 1, 0x7f00_0000_1000L, 0x7f00_0000_3004L, 0x7f00_0000_2002L, 0x3000)),
                new Codec("VhostUserMemoryRegion", VhostUserMemoryRegion::decode, REGION),
                new Codec("VhostUserMemory(1)", VhostUserMemory::decode, VhostUserMemory.of(List.of(REGION))),
                new Codec("VhostUserMemory(8)", VhostUserMemory::decode, VhostUserMemory.of(eightRegions())),
                new Codec("VhostUserMemRegMsg", VhostUserMemRegMsg::decode, VhostUserMemRegMsg.of(REGION)),
                new Codec("VhostUserLog", VhostUserLog::decode, new VhostUserLog(0x8000, 0x1000)),
                new Codec("VhostUserInflight", VhostUserInflight::decode, new VhostUserInflight(0, 0, 2, 128)),
                new Codec("VhostUserConfig", VhostUserConfig::decode, new VhostUserConfig(0, 60, 0, config)));
    }

    private static List<VhostUserMemoryRegion> eightRegions() {
        List<VhostUserMemoryRegion> regions = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            regions.add(new VhostUserMemoryRegion(i * 0x10_0000L, 0x10_0000L, 0x7000_0000L + i * 0x10_0000L, 0));
        }
        return regions;
    }

    static Stream<Arguments> goodPayloads() {
        return codecs().stream().map(c -> Arguments.of(c.name, c));
    }

    static Stream<Arguments> badSizes() {
        return codecs().stream().flatMap(c -> {
            int good = c.sample.sizeBytes();
            return IntStream.of(0, good - 1, good + 1, good + 32, 4096)
                    .filter(size -> size >= 0 && size != good)
                    .mapToObj(size -> Arguments.of(c.name, c, size));
        });
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("goodPayloads")
    void shouldRoundTripWhenPayloadIsValid(String name, Codec codec) {
        MemorySegment buf = encode(codec.sample);
        assertEquals(codec.sample, codec.decoder.apply(REQ, buf));
    }

    @ParameterizedTest(name = "{0} of {2} bytes")
    @MethodSource("badSizes")
    void shouldRejectWhenPayloadSizeIsWrong(String name, Codec codec, int size) {
        // the good encoding, truncated or extended with zeros: the size alone must make it fail
        MemorySegment good = encode(codec.sample);
        MemorySegment buf = MemorySegment.ofArray(new byte[size]);
        MemorySegment.copy(good, 0, buf, 0, Math.min(size, good.byteSize()));
        VhostUserProtocolException e =
                assertThrows(VhostUserProtocolException.class, () -> codec.decoder.apply(REQ, buf));
        assertEquals(REQ, e.requestId());
    }

    @Test
    void shouldRejectVringFdWhenUndefinedBitsAreSet() {
        assertEquals(new VhostUserVringFd(255, false), VhostUserVringFd.decode(REQ, u64(0xff)));
        assertEquals(new VhostUserVringFd(0, true), VhostUserVringFd.decode(REQ, u64(0x100)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserVringFd.decode(REQ, u64(0x200)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserVringFd.decode(REQ, u64(1L << 63)));
        assertEquals(0x107, new VhostUserVringFd(7, true).value());
    }

    @Test
    void shouldRejectVringAddrWhenFlagsUnknownOrRingsMisaligned() {
        VhostUserVringAddr good = new VhostUserVringAddr(0, 0, 0x1000, 0x2000, 0x3000, 0);
        assertEquals(good, VhostUserVringAddr.decode(REQ, encode(good)));
        for (VhostUserVringAddr bad : List.of(
                new VhostUserVringAddr(0, 2, 0x1000, 0x2000, 0x3000, 0),
                new VhostUserVringAddr(0, 0, 0x1008, 0x2000, 0x3000, 0),
                new VhostUserVringAddr(0, 0, 0x1000, 0x2002, 0x3000, 0),
                new VhostUserVringAddr(0, 0, 0x1000, 0x2000, 0x3001, 0))) {
            assertThrows(
                    VhostUserProtocolException.class, () -> VhostUserVringAddr.decode(REQ, encode(bad)), bad::toString);
        }
        assertTrue(new VhostUserVringAddr(0, 1, 0, 0, 0, 0).logUsed());
    }

    @Test
    void shouldRejectMemoryRegionWhenEmptyOrWrappingOrUnmappable() {
        for (VhostUserMemoryRegion bad : List.of(
                new VhostUserMemoryRegion(0, 0, 0x1000, 0),
                new VhostUserMemoryRegion(-0x1000L, 0x2000, 0x1000, 0),
                new VhostUserMemoryRegion(0, 0x2000, -0x1000L, 0),
                new VhostUserMemoryRegion(0, 0x2000, 0x1000, Long.MAX_VALUE - 0x1000),
                new VhostUserMemoryRegion(0, -0x2000L, 0x1000, 0))) {
            assertThrows(
                    VhostUserProtocolException.class,
                    () -> VhostUserMemoryRegion.decode(REQ, encode(bad)),
                    bad::toString);
        }
        // the region may end exactly at 2^64
        VhostUserMemoryRegion top = new VhostUserMemoryRegion(-0x1000L, 0x1000, -0x1000L, 0);
        assertEquals(top, VhostUserMemoryRegion.decode(REQ, encode(top)));
        assertEquals(0x1000 + 0x4000_0000L, REGION.mappingLengthBytes());
    }

    @Test
    void shouldRejectMemoryTableWhenRegionCountIsOutOfRangeOrDisagreesWithSize() {
        for (int nregions : new int[] {0, 9, -1}) {
            MemorySegment buf = MemorySegment.ofArray(new byte[8 + 32 * 8]);
            buf.set(ValueLayout.JAVA_INT_UNALIGNED, 0, nregions);
            assertThrows(VhostUserProtocolException.class, () -> VhostUserMemory.decode(REQ, buf), "n=" + nregions);
        }
        // nregions says 2, the payload holds 1 region
        MemorySegment one = encode(VhostUserMemory.of(List.of(REGION)));
        one.set(ValueLayout.JAVA_INT_UNALIGNED, 0, 2);
        assertThrows(VhostUserProtocolException.class, () -> VhostUserMemory.decode(REQ, one));
        // header only
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserMemory.decode(REQ, MemorySegment.ofArray(new byte[4])));
        // a bad region inside a good table
        MemorySegment badRegion = encode(VhostUserMemory.of(List.of(REGION, REGION)));
        badRegion.set(ValueLayout.JAVA_LONG_UNALIGNED, 8 + 32 + 8, 0L);
        assertThrows(VhostUserProtocolException.class, () -> VhostUserMemory.decode(REQ, badRegion));
        assertEquals(264, VhostUserMemory.MAX_SIZE_BYTES);
    }

    @Test
    void shouldIgnorePaddingWhenDecodingSingleRegion() {
        VhostUserMemRegMsg msg = new VhostUserMemRegMsg(0xdead, REGION);
        assertEquals(msg, VhostUserMemRegMsg.decode(REQ, encode(msg)));
        assertEquals(40, VhostUserMemRegMsg.SIZE_BYTES);
    }

    @Test
    void shouldRejectLogWhenEmptyOrTooLarge() {
        assertThrows(VhostUserProtocolException.class, () -> VhostUserLog.decode(REQ, encode(new VhostUserLog(0, 0))));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserLog.decode(REQ, encode(new VhostUserLog(Long.MAX_VALUE, 1))));
    }

    @Test
    void shouldRejectInflightWhenNoQueues() {
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserInflight.decode(REQ, encode(new VhostUserInflight(0, 0, 0, 128))));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserInflight.decode(REQ, encode(new VhostUserInflight(0, 0, 1, 0))));
        VhostUserInflight max = new VhostUserInflight(1 << 20, 0, 0xFFFF, 0x8000);
        assertEquals(max, VhostUserInflight.decode(REQ, encode(max)));
    }

    @Test
    void shouldRejectConfigWhenSizeFlagsOrWindowAreWrong() {
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(0, 0, 0, 0)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(0, 257, 0, 257)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(0, 8, 0, 9)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(0, 8, 0, 7)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(0, 8, 2, 8)));
        assertThrows(VhostUserProtocolException.class, () -> VhostUserConfig.decode(REQ, config(-4, 8, 0, 8)));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserConfig.decode(REQ, MemorySegment.ofArray(new byte[11])));
        VhostUserConfig migration = VhostUserConfig.decode(REQ, config(0x10, 256, 1, 256));
        assertEquals(0x10, migration.offset());
        assertEquals(VhostUserConfig.VHOST_SET_CONFIG_TYPE_MIGRATION, migration.flags());
        byte[] copy = migration.payload();
        copy[0] = 1;
        assertArrayEquals(new byte[256], migration.payload(), "payload() returns a copy");
    }

    @Test
    void shouldRefuseWhenEncodingAHeaderThatDisagreesWithThePayload() {
        MemorySegment buf = MemorySegment.ofArray(new byte[VhostUserCodec.MESSAGE_BUFFER_SIZE_BYTES]);
        assertEquals(20, VhostUserCodec.encode(buf, VhostUserHeader.reply(1, 8), new VhostUserU64(5)));
        assertEquals(12, VhostUserCodec.encode(buf, VhostUserHeader.reply(1, 0), null));
        assertThrows(
                IllegalArgumentException.class,
                () -> VhostUserCodec.encode(buf, VhostUserHeader.reply(1, 4), new VhostUserU64(5)));
    }

    @Test
    void shouldCheckEachKindsSizeWhenAskedPerRequest() {
        VhostUserCodec.checkPayloadSize(VhostUserRequest.VHOST_USER_GET_FEATURES, MemorySegment.ofArray(new byte[0]));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserCodec.checkPayloadSize(
                        VhostUserRequest.VHOST_USER_GET_FEATURES, MemorySegment.ofArray(new byte[8])));
        VhostUserCodec.checkPayloadSize(VhostUserRequest.VHOST_USER_IOTLB_MSG, MemorySegment.ofArray(new byte[32]));
        VhostUserCodec.checkPayloadSize(VhostUserRequest.VHOST_USER_SET_MEM_TABLE, MemorySegment.ofArray(new byte[8]));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserCodec.checkPayloadSize(
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE, MemorySegment.ofArray(new byte[7])));
        assertThrows(
                VhostUserProtocolException.class,
                () -> VhostUserCodec.checkPayloadSize(
                        VhostUserRequest.VHOST_USER_GET_CONFIG, MemorySegment.ofArray(new byte[11])));
        for (VhostUserRequest r : VhostUserRequest.values()) {
            int fixed = r.payload().fixedSizeBytes();
            if (fixed >= 0) {
                VhostUserCodec.checkPayloadSize(r, MemorySegment.ofArray(new byte[fixed]));
            }
        }
    }

    private static MemorySegment encode(VhostUserPayload payload) {
        MemorySegment buf = MemorySegment.ofArray(new byte[payload.sizeBytes()]);
        payload.encode(buf);
        return buf;
    }

    private static MemorySegment u64(long value) {
        return encode(new VhostUserU64(value));
    }

    private static MemorySegment config(int offset, int size, int flags, int payloadBytes) {
        MemorySegment buf = MemorySegment.ofArray(new byte[12 + payloadBytes]);
        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 0, offset);
        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 4, size);
        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 8, flags);
        return buf;
    }
}

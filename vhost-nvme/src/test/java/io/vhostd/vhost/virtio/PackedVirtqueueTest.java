package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.FakeGuest.Buf.r;
import static io.vhostd.vhost.virtio.FakeGuest.Buf.w;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_DESC;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_DISABLE;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_ENABLE;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_AVAIL;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_USED;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.journal.inflight.InflightDesc;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import java.util.function.ToLongFunction;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/** The packed ring against a fake packed-ring driver: hostile chains, good paths, wrap counters, notifications. */
@Timeout(10)
class PackedVirtqueueTest {

    private static final int SIZE = 16;
    private static final long UNMAPPED_GPA = 0x4000_0000L;

    // ---- hostile chains: POP_MALFORMED with an exact error, the whole chain consumed, nothing written ----

    /** What the driver writes, the error, whether there is an id to answer, how many ring descriptors it takes. */
    record Hostile(
            String name,
            Consumer<FakePackedDriver> driver,
            int error,
            boolean hasId,
            int descriptors,
            int maxSegments) {
        Hostile(String name, Consumer<FakePackedDriver> driver, int error, int descriptors) {
            this(name, driver, error, true, descriptors, 64);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> hostileChains() {
        return Stream.of(
                        new Hostile(
                                "address outside every region",
                                d -> d.add(r(UNMAPPED_GPA, 16)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                1),
                        new Hostile(
                                "first of three descriptors unmapped: the other two still consumed",
                                d -> d.add(r(UNMAPPED_GPA, 16), r(d.g.alloc(16), 16), w(d.g.alloc(1), 1)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                3),
                        new Hostile(
                                "buffer runs past the last region",
                                d -> d.add(w(FakeGuest.END_GPA - 8, 16)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                1),
                        new Hostile(
                                "addr + len overflows 2^64",
                                d -> d.add(r(0xFFFFFFFFFFFFF000L, 0x2000)),
                                ChainError.LENGTH_OVERFLOW,
                                1),
                        new Hostile(
                                "zero-length buffer",
                                d -> d.add(r(d.g.alloc(16), 16), r(d.g.alloc(16), 0), w(d.g.alloc(1), 1)),
                                ChainError.ZERO_LENGTH,
                                3),
                        new Hostile(
                                "readable descriptor after a writable one",
                                d -> d.add(r(d.g.alloc(16), 16), w(d.g.alloc(16), 16), r(d.g.alloc(16), 16)),
                                ChainError.WRITABLE_BEFORE_READABLE,
                                3),
                        new Hostile(
                                "more segments than maxSegments",
                                d -> d.add(
                                        r(d.g.alloc(8), 8),
                                        r(d.g.alloc(8), 8),
                                        r(d.g.alloc(8), 8),
                                        r(d.g.alloc(8), 8),
                                        w(d.g.alloc(8), 8)),
                                ChainError.TOO_MANY_SEGMENTS,
                                true,
                                5,
                                4),
                        new Hostile(
                                "INDIRECT and NEXT together",
                                d -> {
                                    long t = d.rawTable(new long[][] {{d.g.alloc(16), 16, 0}});
                                    d.add(new FakeGuest.Buf(t, 16, false), w(d.g.alloc(1), 1));
                                    d.desc((d.nextAvail + SIZE - 2) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short)
                                                    (VIRTQ_DESC_F_INDIRECT
                                                            | VIRTQ_DESC_F_NEXT
                                                            | FakePackedDriver.availFlags(true)));
                                },
                                ChainError.NEXT_AND_INDIRECT,
                                2),
                        new Hostile(
                                "INDIRECT in the second descriptor of a NEXT-linked list",
                                d -> {
                                    long t = d.rawTable(new long[][] {{d.g.alloc(1), 1, VIRTQ_DESC_F_WRITE}});
                                    d.add(r(d.g.alloc(16), 16), new FakeGuest.Buf(t, 16, false));
                                    d.desc((d.nextAvail + SIZE - 1) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short)
                                                    (VIRTQ_DESC_F_INDIRECT | FakePackedDriver.availFlags(true)));
                                },
                                ChainError.NEXT_AND_INDIRECT,
                                2),
                        new Hostile(
                                "indirect inside indirect",
                                d -> {
                                    long inner = d.rawTable(new long[][] {{d.g.alloc(16), 16, 0}});
                                    long outer = d.rawTable(new long[][] {{inner, 16, VIRTQ_DESC_F_INDIRECT}});
                                    d.addRaw(outer, 16, VIRTQ_DESC_F_INDIRECT);
                                },
                                ChainError.NESTED_INDIRECT,
                                1),
                        new Hostile(
                                "indirect table len 0",
                                d -> d.addRaw(d.g.alloc(16), 0, VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "indirect table len not a multiple of 16",
                                d -> d.addRaw(d.g.alloc(32), 24, VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "indirect table with more entries than the queue size",
                                d -> d.addRaw(d.g.alloc(16 * (SIZE + 1)), 16 * (SIZE + 1), VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "indirect table outside every region",
                                d -> d.addRaw(UNMAPPED_GPA, 32, VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "indirect table straddles two regions",
                                d -> d.addRaw(FakeGuest.REGION1_GPA - 16, 32, VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "indirect table len 0xFFFFFFF0 at the top of the address space",
                                d -> d.addRaw(0xFFFFFFFFFFFFFF00L, 0xFFFFFFF0, VIRTQ_DESC_F_INDIRECT),
                                ChainError.BAD_INDIRECT_TABLE,
                                1),
                        new Hostile(
                                "readable entry after a writable one inside an indirect table",
                                d -> d.addIndirect(w(d.g.alloc(16), 16), r(d.g.alloc(16), 16)),
                                ChainError.WRITABLE_BEFORE_READABLE,
                                1),
                        new Hostile(
                                "zero-length entry inside an indirect table",
                                d -> d.addIndirect(r(d.g.alloc(16), 16), w(d.g.alloc(16), 0)),
                                ChainError.ZERO_LENGTH,
                                1),
                        new Hostile(
                                "buffer id >= queue size",
                                d -> {
                                    d.add(r(d.g.alloc(16), 16), w(d.g.alloc(1), 1));
                                    d.desc((d.nextAvail + SIZE - 1) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 12, (short) SIZE);
                                },
                                ChainError.DESC_OUT_OF_RANGE,
                                false,
                                2,
                                64),
                        new Hostile(
                                "buffer id 0xFFFF",
                                d -> {
                                    d.add(w(d.g.alloc(1), 1));
                                    d.desc((d.nextAvail + SIZE - 1) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 12, (short) -1);
                                },
                                ChainError.DESC_OUT_OF_RANGE,
                                false,
                                1,
                                64))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("hostileChains")
    void shouldRejectChainWithExactErrorConsumeItAndWriteNothingWhenGuestIsHostile(Hostile c) {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            c.driver().accept(d);
            PackedVirtqueue q = d.queue(false, c.maxSegments());
            DescriptorChain chain = new DescriptorChain(64);
            byte[] before = g.snapshot();

            int rc = q.pop(chain);

            assertEquals(Virtqueue.POP_MALFORMED, rc, c.name());
            assertEquals(ChainError.name(c.error()), chain.errorName(), c.name());
            assertEquals(c.hasId() ? 0 : -1, chain.head());
            assertEquals(c.descriptors(), chain.ringDescriptorCount());
            assertEquals(c.descriptors() | 1 << 15, q.lastAvailIdx(), "the whole chain is consumed");
            assertArrayEquals(before, g.snapshot(), "pop wrote guest memory");
            assertEquals(Virtqueue.POP_EMPTY, q.pop(chain));
        }
    }

    @Test
    void shouldRejectIndirectWhenNotNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            d.addIndirect(r(g.alloc(16), 16), w(g.alloc(1), 1));
            PackedVirtqueue q = d.queue(false, 64, false);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(Virtqueue.POP_MALFORMED, q.pop(chain));

            assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, chain.error());
            assertFalse(q.indirectDesc());
        }
    }

    // ---- malformed chains: the last descriptor (virtio-blk's status byte) is located, or not ----

    /** What the driver writes (returns the expected last byte's gpa, or -1), the error, the segment cap. */
    record LastByte(String name, ToLongFunction<FakePackedDriver> driver, int error, int maxSegments) {
        LastByte(String name, ToLongFunction<FakePackedDriver> driver, int error) {
            this(name, driver, error, 64);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> malformedChainsLastByte() {
        return Stream.of(
                        new LastByte(
                                "data outside guest memory, status after it",
                                d -> {
                                    long st = d.g.alloc(1);
                                    d.add(r(d.g.alloc(16), 16), r(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "writable data translated, writable data unmapped, status after it",
                                d -> {
                                    long st = d.g.alloc(1);
                                    d.add(r(d.g.alloc(16), 16), w(d.g.alloc(512), 512), w(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "addr + len overflows 2^64, status after it",
                                d -> {
                                    long st = d.g.alloc(1);
                                    d.add(r(d.g.alloc(16), 16), r(0xFFFFFFFFFFFFF000L, 0x2000), w(st, 1));
                                    return st;
                                },
                                ChainError.LENGTH_OVERFLOW),
                        new LastByte(
                                "too many segments, status after them",
                                d -> {
                                    long st = d.g.alloc(1);
                                    d.add(r(d.g.alloc(16), 16), r(d.g.alloc(8), 8), r(d.g.alloc(8), 8), w(st, 1));
                                    return st;
                                },
                                ChainError.TOO_MANY_SEGMENTS,
                                2),
                        new LastByte(
                                "INDIRECT in the middle of a NEXT-linked list, status after it",
                                d -> {
                                    long st = d.g.alloc(1);
                                    long t = d.rawTable(new long[][] {{d.g.alloc(16), 16, 0}});
                                    d.add(r(d.g.alloc(16), 16), new FakeGuest.Buf(t, 16, false), w(st, 1));
                                    d.desc((d.nextAvail + SIZE - 2) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short)
                                                    (VIRTQ_DESC_F_INDIRECT
                                                            | VIRTQ_DESC_F_NEXT
                                                            | FakePackedDriver.availFlags(true)));
                                    return st;
                                },
                                ChainError.NEXT_AND_INDIRECT),
                        new LastByte(
                                "unmapped buffer in an indirect table, status its last entry",
                                d -> {
                                    long st = d.g.alloc(1);
                                    d.addIndirect(r(d.g.alloc(16), 16), r(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "indirect inside indirect, status the table's last entry",
                                d -> {
                                    long st = d.g.alloc(1);
                                    long inner = d.rawTable(new long[][] {{d.g.alloc(16), 16, 0}});
                                    long t = d.rawTable(new long[][] {
                                        {d.g.alloc(16), 16, 0},
                                        {inner, 16, VIRTQ_DESC_F_INDIRECT},
                                        {st, 1, VIRTQ_DESC_F_WRITE}
                                    });
                                    d.addRaw(t, 48, VIRTQ_DESC_F_INDIRECT);
                                    return st;
                                },
                                ChainError.NESTED_INDIRECT),
                        new LastByte(
                                "status outside guest memory",
                                d -> {
                                    d.add(r(d.g.alloc(16), 16), w(UNMAPPED_GPA, 1));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "status runs past the last region",
                                d -> {
                                    d.add(r(d.g.alloc(16), 16), w(FakeGuest.END_GPA - 8, 16));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "last descriptor readable",
                                d -> {
                                    d.add(r(UNMAPPED_GPA, 16), r(d.g.alloc(16), 16));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "indirect table whose last entry is a table",
                                d -> {
                                    long inner = d.rawTable(new long[][] {{d.g.alloc(1), 1, VIRTQ_DESC_F_WRITE}});
                                    long t = d.rawTable(
                                            new long[][] {{UNMAPPED_GPA, 16, 0}, {inner, 16, VIRTQ_DESC_F_INDIRECT}});
                                    d.addRaw(t, 32, VIRTQ_DESC_F_INDIRECT);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "chain ends in an INDIRECT descriptor of a NEXT-linked list",
                                d -> {
                                    long t = d.rawTable(new long[][] {{d.g.alloc(1), 1, VIRTQ_DESC_F_WRITE}});
                                    d.add(r(d.g.alloc(16), 16), new FakeGuest.Buf(t, 16, false));
                                    d.desc((d.nextAvail + SIZE - 1) % SIZE)
                                            .set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short)
                                                    (VIRTQ_DESC_F_INDIRECT | FakePackedDriver.availFlags(true)));
                                    return -1;
                                },
                                ChainError.NEXT_AND_INDIRECT),
                        new LastByte(
                                "indirect table outside every region",
                                d -> {
                                    d.addRaw(UNMAPPED_GPA, 32, VIRTQ_DESC_F_INDIRECT);
                                    return -1;
                                },
                                ChainError.BAD_INDIRECT_TABLE))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedChainsLastByte")
    void shouldLocateLastByteOnlyWhenMalformedChainEndsInWritableGuestMemory(LastByte c) {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            long expected = c.driver().applyAsLong(d);
            PackedVirtqueue q = d.queue(false, c.maxSegments());
            DescriptorChain chain = new DescriptorChain(64);
            byte[] before = g.snapshot();

            assertEquals(Virtqueue.POP_MALFORMED, q.pop(chain), c.name());

            assertEquals(ChainError.name(c.error()), chain.errorName(), c.name());
            assertArrayEquals(before, g.snapshot(), "pop wrote guest memory");
            assertEquals(expected >= 0, chain.lastByteLocated(), c.name());
            if (expected >= 0) {
                assertEquals(expected, chain.lastByteGpa());
                GuestMemoryRegion region = g.memory().region(chain.lastByteRegionIndex());
                assertEquals(expected, region.guestPhysAddr() + chain.lastByteRegionOffset());
            }
        }
    }

    @Test
    void shouldLocateLastByteFromCopiesOnlyWhenTheyEndWhereNextSays() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            PackedVirtqueue q = new FakePackedDriver(g).queue(false, 64);
            DescriptorChain chain = new DescriptorChain(64);
            long st = g.alloc(1);
            InflightDesc hdr = new InflightDesc(g.alloc(16), 16, 0xFFFF, VIRTQ_DESC_F_NEXT);
            InflightDesc bad = new InflightDesc(UNMAPPED_GPA, 512, 0xFFFF, VIRTQ_DESC_F_NEXT);

            assertEquals(
                    Virtqueue.POP_MALFORMED,
                    q.popCopies(List.of(hdr, bad, new InflightDesc(st, 1, 3, VIRTQ_DESC_F_WRITE)), chain));
            assertEquals(ChainError.ADDRESS_NOT_MAPPED, chain.error());
            assertEquals(3, chain.head());
            assertTrue(chain.lastByteLocated());
            assertEquals(st, chain.lastByteGpa());

            // the last copy still has NEXT: the chain's end is unknown
            assertEquals(
                    Virtqueue.POP_MALFORMED,
                    q.popCopies(
                            List.of(hdr, bad, new InflightDesc(st, 1, 3, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)),
                            chain));
            assertEquals(ChainError.ADDRESS_NOT_MAPPED, chain.error());
            assertFalse(chain.lastByteLocated());
        }
    }

    @Test
    void shouldKeepSegmentsBeforeErrorWhenChainIsMalformed() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            long status = g.alloc(1);
            int id = d.add(r(g.alloc(16), 16), w(status, 1), r(g.alloc(16), 16));
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(Virtqueue.POP_MALFORMED, d.queue(false, 64).pop(chain));

            assertEquals(ChainError.WRITABLE_BEFORE_READABLE, chain.error());
            assertEquals(id, chain.head());
            assertEquals(2, chain.segmentCount());
            assertEquals(status, chain.gpa(1));
            assertEquals(3, chain.ringDescriptorCount());
            assertFalse(chain.lastByteLocated(), "the chain's last descriptor is readable: no status byte");
        }
    }

    // ---- a broken ring: IllegalStateException, nothing consumed, nothing written ----

    @Test
    void shouldThrowAndConsumeNothingWhenLaterDescriptorOfChainIsNotAvailable() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            d.add(r(g.alloc(16), 16), w(g.alloc(16), 16), w(g.alloc(1), 1));
            // the third descriptor still carries the previous lap's flags
            d.desc(2).set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short) VIRTQ_DESC_F_WRITE);
            PackedVirtqueue q = d.queue(false, 64);
            byte[] before = g.snapshot();

            assertThrows(IllegalStateException.class, () -> q.pop(new DescriptorChain(64)));

            assertEquals(0 | 1 << 15, q.lastAvailIdx());
            assertArrayEquals(before, g.snapshot());
        }
    }

    @Test
    void shouldThrowWhenChainHasNoEndWithinQueueSize() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            FakePackedDriver d = new FakePackedDriver(g);
            long b = g.alloc(16);
            for (int i = 0; i < SIZE; i++) {
                d.writeDesc(i, b, 16, 0, VIRTQ_DESC_F_NEXT | FakePackedDriver.availFlags(true));
            }
            // a lap later the first descriptors look available again: the walk must stop at the queue size
            PackedVirtqueue q = d.queue(false, 64);

            assertThrows(IllegalStateException.class, () -> q.pop(new DescriptorChain(64)));
            assertEquals(0 | 1 << 15, q.lastAvailIdx());
        }
    }

    // ---- good paths ----

    @Test
    void shouldReturnEmptyWhenNothingAvailable() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            PackedVirtqueue q = new FakePackedDriver(g).queue(false, 64);

            assertFalse(q.hasAvail());
            assertEquals(Virtqueue.POP_EMPTY, q.pop(new DescriptorChain(4)));
            assertEquals(PackedRingDescriptor.VRING_BASE_INITIAL, q.vringBase());
        }
    }

    @ParameterizedTest(name = "{0} descriptors")
    @CsvSource({"1", "3", "16"})
    void shouldTranslateDirectChainAndTakeIdFromLastDescriptorWhenChainGiven(int n) {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            FakeGuest.Buf[] bufs = new FakeGuest.Buf[n];
            for (int i = 0; i < n; i++) {
                int len = 16 + i;
                bufs[i] = i < n / 2 ? r(g.alloc(len), len) : w(g.alloc(len), len);
            }
            d.takeId();
            int id = d.add(bufs);
            PackedVirtqueue q = d.queue(false, 64);
            DescriptorChain chain = new DescriptorChain(64);

            assertTrue(q.hasAvail());
            assertEquals(Virtqueue.POP_OK, q.pop(chain));

            SplitVirtqueueTest.assertChainMatches(bufs, chain, id);
            assertEquals(1, id, "not 0xFFFF from the first descriptors");
            assertEquals(n, chain.ringDescriptorCount());
            assertEquals(n, chain.descriptorCount());
            assertFalse(chain.indirect());
            assertEquals(n == SIZE ? 0 : n | 1 << 15, q.lastAvailIdx(), "a full lap flips the wrap counter");
        }
    }

    @Test
    void shouldTranslateIndirectChainAsOneRingDescriptor() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            FakeGuest.Buf[] bufs = {r(g.alloc(16), 16), w(g.alloc(4096), 4096), w(g.alloc(1), 1)};
            int id = d.addIndirect(bufs);
            // §2.8.7: the WRITE flag of the descriptor referring to a table is ignored
            d.desc(0).set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, 14, (short)
                    (VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE | FakePackedDriver.availFlags(true)));
            DescriptorChain chain = new DescriptorChain(8);

            assertEquals(Virtqueue.POP_OK, d.queue(false, 8).pop(chain));

            SplitVirtqueueTest.assertChainMatches(bufs, chain, id);
            assertTrue(chain.indirect());
            assertEquals(1, chain.ringDescriptorCount());
            assertEquals(4, chain.descriptorCount());
        }
    }

    @Test
    void shouldShowUsedDescriptorsOnlyWhenPublishedAndSkipChainLength() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            int id0 = d.add(r(g.alloc(16), 16), w(g.alloc(1), 1));
            int id1 = d.add(r(g.alloc(16), 16), w(g.alloc(512), 512), w(g.alloc(1), 1));
            PackedVirtqueue q = d.queue(false, 8);
            DescriptorChain chain = new DescriptorChain(8);
            assertEquals(Virtqueue.POP_OK, q.pop(chain));
            int count0 = chain.ringDescriptorCount();
            assertEquals(Virtqueue.POP_OK, q.pop(chain));
            int count1 = chain.ringDescriptorCount();

            // completed out of order: id1 first
            q.pushUsed(id1, 513, count1);
            q.pushUsed(id0, 0, count0);
            assertFalse(d.hasUsed(), "not visible before publishUsed");
            q.publishUsed();

            FakePackedDriver.Used u1 = d.takeUsed();
            assertEquals(id1, u1.id());
            assertEquals(513, u1.len());
            assertEquals(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED | VIRTQ_DESC_F_WRITE, u1.flags());
            FakePackedDriver.Used u0 = d.takeUsed();
            assertEquals(id0, u0.id());
            assertEquals(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED, u0.flags(), "no WRITE: nothing written");
            assertFalse(d.hasUsed());
            assertEquals(5 | 1 << 15, q.usedIdx(), "used offset advanced by 3 + 2 descriptors");
        }
    }

    @Test
    void shouldRejectPushOfIdOrCountOutsideQueue() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            PackedVirtqueue q = new FakePackedDriver(g).queue(false, 8);
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(SIZE, 0, 1));
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(-1, 0, 1));
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(0, 0, 0));
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(0, 0, SIZE + 1));
        }
    }

    @ParameterizedTest(name = "size {0}")
    @CsvSource({"16", "6", "1"})
    void shouldKeepDriverAndDeviceInStepOverManyLapsWhenCompletingOutOfOrder(int size) {
        try (FakeGuest g = new FakeGuest(size, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            PackedVirtqueue q = d.queue(true, 8);
            DescriptorChain chain = new DescriptorChain(8);
            Random random = new Random(size);
            List<int[]> inflight = new ArrayList<>();
            ArrayDeque<Integer> expected = new ArrayDeque<>();
            int completed = 0;
            long data = g.alloc(64);
            while (completed < 40 * size) {
                // the driver fills what it can with chains of 1..3 descriptors
                int n = 1 + random.nextInt(Math.min(3, size));
                if (n <= d.freeDescriptors) {
                    FakeGuest.Buf[] bufs = new FakeGuest.Buf[n];
                    for (int i = 0; i < n; i++) {
                        bufs[i] = i == n - 1 ? w(data + i, 1) : r(data + i, 1);
                    }
                    d.add(bufs);
                }
                // the device takes everything available
                while (q.pop(chain) == Virtqueue.POP_OK) {
                    inflight.add(new int[] {chain.head(), chain.ringDescriptorCount()});
                }
                // and completes a random subset, in random order
                int k = inflight.isEmpty() ? 0 : random.nextInt(inflight.size() + 1);
                for (int i = 0; i < k; i++) {
                    int[] done = inflight.remove(random.nextInt(inflight.size()));
                    q.pushUsed(done[0], 1, done[1]);
                    expected.add(done[0]);
                }
                q.publishUsed();
                while (d.hasUsed()) {
                    assertEquals(expected.poll(), d.takeUsed().id());
                    completed++;
                }
                assertTrue(expected.isEmpty(), "every published element seen");
            }
            assertEquals(q.usedIdx(), d.nextUsed | (d.usedWrap ? 1 << 15 : 0), "device and driver agree");
        }
    }

    @Test
    void shouldEncodeVringBaseWithWrapCountersAndRejectOffsetsBeyondRing() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            PackedVirtqueue q = new FakePackedDriver(g).queue(false, 8);
            int base = 7 | 0 << 15 | (15 | 1 << 15) << 16;

            q.vringBase(base);

            assertEquals(base, q.vringBase());
            assertEquals(7, q.lastAvailIdx());
            assertEquals(15 | 1 << 15, q.usedIdx());
            assertThrows(IllegalArgumentException.class, () -> q.vringBase(SIZE));
            assertThrows(IllegalArgumentException.class, () -> q.vringBase(SIZE << 16));
            assertThrows(IllegalArgumentException.class, () -> q.lastAvailIdx(0x7FFF));
            assertEquals(base, q.vringBase(), "unchanged by a refused base");
        }
    }

    @Test
    void shouldResumeFromBaseInSecondLapWhenVringBaseSet() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            // run one device to offset 14 of the first lap, then hand over to a second one at that base
            PackedVirtqueue first = d.queue(false, 8);
            DescriptorChain chain = new DescriptorChain(8);
            for (int i = 0; i < 7; i++) {
                d.add(r(g.alloc(16), 16), w(g.alloc(1), 1));
                assertEquals(Virtqueue.POP_OK, first.pop(chain));
                first.pushUsed(chain.head(), 1, chain.ringDescriptorCount());
                first.publishUsed();
                d.takeUsed();
            }
            PackedVirtqueue second = d.queue(false, 8);
            second.vringBase(first.vringBase());
            // a chain across the end of the ring: offsets 14, 15, 0
            int id = d.add(r(g.alloc(16), 16), r(g.alloc(16), 16), w(g.alloc(1), 1));

            assertEquals(Virtqueue.POP_OK, second.pop(chain));
            assertEquals(id, chain.head());
            assertEquals(1, second.lastAvailIdx(), "offset 1 of the second lap: wrap counter 0");
            second.pushUsed(id, 1, 3);
            second.publishUsed();
            assertEquals(id, d.takeUsed().id());
            assertEquals(1, second.usedIdx());
            assertFalse(d.usedWrap);
        }
    }

    // ---- notifications ----

    @Test
    void shouldWriteDeviceAreaWhenNotificationsToggled() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            PackedVirtqueue q = d.queue(false, 8);

            q.disableNotifications();
            assertEquals(RING_EVENT_FLAGS_DISABLE, d.deviceEventFlags());
            assertFalse(q.enableNotifications());
            assertEquals(RING_EVENT_FLAGS_ENABLE, d.deviceEventFlags());
            q.disableNotifications();
            d.add(w(g.alloc(1), 1));
            assertTrue(q.enableNotifications(), "arrived while kicks were off");
        }
    }

    @Test
    void shouldAskForKickAtNextAvailableDescriptorWhenEventIdxNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            PackedVirtqueue q = d.queue(true, 8);
            q.vringBase(15 | 1 << 15 | (15 | 1 << 15) << 16);
            d.nextAvail = 15;
            d.nextUsed = 15;
            d.add(w(g.alloc(1), 1));
            assertEquals(Virtqueue.POP_OK, q.pop(new DescriptorChain(2)));

            assertFalse(q.enableNotifications());

            assertEquals(RING_EVENT_FLAGS_DESC, d.deviceEventFlags());
            assertEquals(0, d.deviceEventDesc(), "offset 0 of the next lap, wrap counter 0");
            q.disableNotifications();
            assertEquals(RING_EVENT_FLAGS_DISABLE, d.deviceEventFlags());
        }
    }

    @ParameterizedTest(name = "driver flags {0} -> notify {1}")
    @CsvSource({"0, true", "1, false", "2, true", "3, true"})
    void shouldFollowDriverAreaFlagsWhenEventIdxNotNegotiated(int flags, boolean notify) {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            PackedVirtqueue q = d.queue(false, 8);
            d.driverEvent(flags, 0, true);
            q.pushUsed(0, 0, 1);
            q.publishUsed();

            assertEquals(notify, q.needsNotification());
        }
    }

    @Test
    void shouldNotifyOnlyWhenUsedPositionPassesDriverEventWhenEventIdxNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            FakePackedDriver d = new FakePackedDriver(g);
            PackedVirtqueue q = d.queue(true, 8);
            d.driverEvent(RING_EVENT_FLAGS_DESC, 5, true);

            publish(q, 1);
            assertTrue(q.needsNotification(), "first check always notifies");
            publish(q, 2); // 1 -> 3: event 5 not crossed
            assertFalse(q.needsNotification());
            publish(q, 2); // 3 -> 5: descriptor 5 not yet used
            assertFalse(q.needsNotification());
            publish(q, 1); // 5 -> 6: crossed
            assertTrue(q.needsNotification());
            assertFalse(q.needsNotification(), "no progress since the last check");

            // event in the next lap (wrap counter 0) at offset 2
            d.driverEvent(RING_EVENT_FLAGS_DESC, 2, false);
            publish(q, 9); // 6 -> 15
            assertFalse(q.needsNotification());
            publish(q, 2); // 15 -> 1 of the next lap
            assertFalse(q.needsNotification());
            publish(q, 2); // 1 -> 3 of the next lap: crossed 2
            assertTrue(q.needsNotification());

            d.driverEvent(RING_EVENT_FLAGS_DISABLE, 0, true);
            publish(q, 1);
            assertFalse(q.needsNotification());
            d.driverEvent(RING_EVENT_FLAGS_ENABLE, 0, true);
            publish(q, 1);
            assertTrue(q.needsNotification());
            q.usedIdx(q.usedIdx());
            d.driverEvent(RING_EVENT_FLAGS_DESC, 0, true);
            assertTrue(q.needsNotification(), "usedIdx(int) invalidates the last signalled position");
        }
    }

    private static void publish(PackedVirtqueue q, int n) {
        for (int i = 0; i < n; i++) {
            q.pushUsed(0, 0, 1);
        }
        q.publishUsed();
    }

    // ---- construction ----

    @Test
    void shouldRejectQueueWhenSizeOrAreasInvalid() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            GuestMemory m = g.memory();
            long d = g.descGpa;
            long a = g.availGpa;
            long u = g.usedGpa;
            for (int size : new int[] {0, 32769, -1}) {
                assertThrows(
                        IllegalArgumentException.class,
                        () -> new PackedVirtqueue(0, size, m, d, a, u, false, 8, true),
                        "size " + size);
            }
            assertThrows(
                    IllegalArgumentException.class, () -> new PackedVirtqueue(0, SIZE, m, d + 8, a, u, false, 8, true));
            assertThrows(
                    IllegalArgumentException.class, () -> new PackedVirtqueue(0, SIZE, m, d, a + 2, u, false, 8, true));
            assertThrows(
                    IllegalArgumentException.class, () -> new PackedVirtqueue(0, SIZE, m, d, a, u + 2, false, 8, true));
            assertThrows(
                    IllegalArgumentException.class,
                    () -> new PackedVirtqueue(0, SIZE, m, UNMAPPED_GPA, a, u, false, 8, true));
            assertThrows(
                    IllegalArgumentException.class,
                    () -> new PackedVirtqueue(0, SIZE, m, d, a, FakeGuest.END_GPA - 2, false, 8, true));
            assertThrows(
                    IllegalArgumentException.class, () -> new PackedVirtqueue(0, SIZE, m, d, a, u, false, 0, true));
            assertEquals(24, new PackedVirtqueue(0, 24, m, d, a, u, false, 8, true).size(), "any size is fine");
        }
    }
}

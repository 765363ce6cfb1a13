package io.vhostd.journal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.agrona.SemanticVersion;

/**
 * Layout of one session journal in shared memory: the normative text is {@code journal/spec/journal.md}; where this
 * class and the spec disagree, this class is the bug.
 *
 * <p>The master formats the region (a memfd it owns and keeps across slave deaths) and a slave writes it. The region
 * holds no pointers, only offsets, indexes and guest addresses. Every multi-byte field is little endian. Every section
 * starts on a 64-byte cache line; the region's base must be 64-byte aligned (a mapping is page aligned).
 *
 * <pre>
 *  +------------------------------------------+ 0
 *  | Header (written by the master, once)     | HEADER_LENGTH = 64
 *  +------------------------------------------+ 64    CONFIG_GENERATION_OFFSET
 *  | Config commit word, u64 (own line)       | the active copy is generation &amp; 1
 *  +------------------------------------------+ 128   CONFIG_COPIES_OFFSET
 *  | Config copy 0                            | configLengthBytes(maxQueues) =
 *  |   session part (1344 bytes)              |   1344 + 128 * maxQueues
 *  |   vring record x maxQueues (128 each)    |
 *  +------------------------------------------+ 128 + configLengthBytes
 *  | Config copy 1 (same layout)              |
 *  +------------------------------------------+ queuesOffset(maxQueues) = 128 + 2 * configLengthBytes
 *  | Queue area 0:                            | queueLengthBytes(maxSlots, entryLength) =
 *  |   queue header (64: fetch word, used     |   64 + align64(maxSlots * slotLength)
 *  |   word, batch word, batch count)         |      + align64(maxSlots * 2)
 *  |   slots: maxSlots x slotLength           |   slotLength = 16 + entryLength
 *  |   batch list: maxSlots x u16             |
 *  +------------------------------------------+
 *  | Queue area 1 .. maxQueues - 1            |
 *  +------------------------------------------+ lengthBytes(maxQueues, maxSlots, entryLength)
 * </pre>
 *
 * <p>The header (the rest of the line is reserved and zero):
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                    Magic "VHOSTDJL" (u64)                     |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 *  8 |        Version (u32, release-stored LAST; 0 = not ready)      |
 *    +---------------------------------------------------------------+
 * 12 |                 Max queues (u32, 1..1024)                     |
 *    +---------------------------------------------------------------+
 * 16 |              Max slots per queue (u32, 1..32768)              |
 *    +---------------------------------------------------------------+
 * 20 |           Entry copy length in bytes (u32, 0 or 64)           |
 *    +---------------------------------------------------------------+
 * 24 |                Total length in bytes (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 32 |                      Reserved (32 bytes)                      |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>The session part of a config copy:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                 Negotiated virtio features (u64)              |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 *  8 |            Negotiated protocol features (u64)                 |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 16 |    Session flags (u32): bit 0 features set, bit 1 protocol    |
 *    |    features set, bit 2 memory table set                       |
 *    +---------------------------------------------------------------+
 * 20 |                Memory region count (u32, 0..32)               |
 *    +---------------------------------------------------------------+
 * 24 |                       Reserved (u64)                          |
 *    +---------------------------------------------------------------+
 * 32 |        Memory region 0..31, 40 bytes each (below)             |
 *    ...                                                           ...
 *    +---------------------------------------------------------------+
 *1312|                      Reserved (32 bytes)                      |
 *    +---------------------------------------------------------------+ 1344
 * </pre>
 *
 * <p>A memory region (40 bytes): guest address u64 at 0, size u64 at 8, user address u64 at 16, mmap offset u64 at 24,
 * region id u32 at 32, reserved u32 at 36.
 *
 * <p>A vring record (128 bytes, one per queue index, at {@code 1344 + 128 * queue}):
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 | Flags (u32): bit 0 configured, 1 started, 2 enabled, 3 packed,|
 *    |              4 entry copies                                   |
 *    +---------------------------------------------------------------+
 *  4 |                     Queue size (u32)                          |
 *    +---------------------------------------------------------------+
 *  8 |                     Slot count (u32)                          |
 *    +---------------------------------------------------------------+
 * 12 |        vhost_vring_addr flags (u32, VHOST_VRING_F_LOG)        |
 *    +---------------------------------------------------------------+
 * 16 |             Descriptor table / ring GPA (u64)                 |
 *    +---------------------------------------------------------------+
 * 24 |             Available ring / driver area GPA (u64)            |
 *    +---------------------------------------------------------------+
 * 32 |                Used ring / device area GPA (u64)              |
 *    +---------------------------------------------------------------+
 * 40 |                  log_guest_addr (u64)                         |
 *    +---------------------------------------------------------------+
 * 48 |               Start fetch sequence (u64, u48 used)            |
 *    +---------------------------------------------------------------+
 * 56 |               Start last avail index (u32, u16 used)          |
 *    +---------------------------------------------------------------+
 * 60 |                  Start used index (u32)                       |
 *    +---------------------------------------------------------------+
 * 64 |               Start batch sequence (u32)                      |
 *    +---------------------------------------------------------------+
 * 68 |                     Reserved (60 bytes)                       |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>A queue header (64 bytes), the per-request commit words:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 | Fetch word (u64): bits 0..15 last avail index,                |
 *    |                   bits 16..63 fetch sequence (u48)            |
 *    +---------------------------------------------------------------+
 *  8 | Used word (u64): bits 0..31 used index,                       |
 *    |                  bits 32..63 applied batch sequence (u32)     |
 *    +---------------------------------------------------------------+
 * 16 | Batch word (u64): bits 0..31 used index after the batch,      |
 *    |                   bits 32..63 batch sequence (u32)            |
 *    +---------------------------------------------------------------+
 * 24 |                  Batch slot count (u32)                       |
 *    +---------------------------------------------------------------+
 * 28 |                     Reserved (36 bytes)                       |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>A slot (16 bytes + entry copy): fetch sequence u64 at 0 (0 = free), reserved u64 at 8, entry copy at 16.
 *
 * <p>A packed ring with entry copies (version 1.2, spec §6.5) uses its slots as <em>cells</em>, one per ring
 * descriptor of a chain in flight; the entry copy of a cell:
 *
 * <pre>
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +---------------------------------------------------------------+
 *  0 |        The ring descriptor as fetched (struct pvirtq_desc):   |
 *    |        addr u64 at 0, len u32 at 8, id u16 at 12, flags u16   |
 *    |        at 14 (virtio 1.2 §2.8.13), little endian              |
 *    +-------------------------------+-------------------------------+
 * 16 |  Position in the chain (u16)  |  Buffer id of the chain (u16) |
 *    +-------------------------------+-------------------------------+
 * 20 |                     Reserved (44 bytes)                       |
 *    +---------------------------------------------------------------+
 * </pre>
 */
public final class JournalDescriptor {
    /** "VHOSTDJL" read as a little-endian u64. */
    public static final long MAGIC = 0x4C4A4454534F4856L;

    /** Major version: a reader refuses a region whose major version differs from its own. */
    public static final int MAJOR_VERSION = 1;

    /** Minor version: additions that a peer with a lower minor version may ignore. */
    public static final int MINOR_VERSION = 2;

    /** Patch version: no layout change. */
    public static final int PATCH_VERSION = 0;

    /** Version stored in the header: {@code (major << 16) | (minor << 8) | patch}; 0 means "not ready". */
    public static final int VERSION = SemanticVersion.compose(MAJOR_VERSION, MINOR_VERSION, PATCH_VERSION);

    /** A cache line: every section starts on one. */
    public static final int CACHE_LINE_LENGTH = 64;

    /** Offset of the magic number (u64). */
    public static final int MAGIC_OFFSET = 0;

    /** Offset of the version (u32), release-stored last by the master. */
    public static final int VERSION_OFFSET = 8;

    /** Offset of the maximum number of queues (u32). */
    public static final int MAX_QUEUES_OFFSET = 12;

    /** Offset of the maximum number of slots per queue (u32). */
    public static final int MAX_SLOTS_OFFSET = 16;

    /** Offset of the entry copy length in bytes (u32): 0 or {@link #ENTRY_COPY_LENGTH}. */
    public static final int ENTRY_LENGTH_OFFSET = 20;

    /** Offset of the total length of the region in bytes (u64). */
    public static final int LENGTH_OFFSET = 24;

    /** Length of the header. */
    public static final int HEADER_LENGTH = 64;

    /** Offset of the configuration commit word (u64, own cache line): a generation; copy {@code generation & 1}. */
    public static final int CONFIG_GENERATION_OFFSET = 64;

    /** Offset of config copy 0. */
    public static final int CONFIG_COPIES_OFFSET = 128;

    /** Session part: negotiated virtio features (u64). */
    public static final int SESSION_FEATURES_OFFSET = 0;

    /** Session part: negotiated vhost-user protocol features (u64). */
    public static final int SESSION_PROTOCOL_FEATURES_OFFSET = 8;

    /** Session part: flags (u32), {@code SESSION_*_SET_BIT}. */
    public static final int SESSION_FLAGS_OFFSET = 16;

    /** Session part: number of memory regions (u32). */
    public static final int SESSION_MEM_REGION_COUNT_OFFSET = 20;

    /** Session part: the memory regions, {@link #MAX_MEM_REGIONS} x {@link #MEM_REGION_LENGTH}. */
    public static final int SESSION_MEM_REGIONS_OFFSET = 32;

    /** Length of the session part; the vring records follow it. */
    public static final int SESSION_CONFIG_LENGTH = 1344;

    /** Session flag bit: {@code VHOST_USER_SET_FEATURES} was received. */
    public static final int SESSION_FEATURES_SET_BIT = 0;

    /** Mask of {@link #SESSION_FEATURES_SET_BIT}. */
    public static final int SESSION_FEATURES_SET_MASK = 1 << SESSION_FEATURES_SET_BIT;

    /** Session flag bit: {@code VHOST_USER_SET_PROTOCOL_FEATURES} was received. */
    public static final int SESSION_PROTOCOL_FEATURES_SET_BIT = 1;

    /** Mask of {@link #SESSION_PROTOCOL_FEATURES_SET_BIT}. */
    public static final int SESSION_PROTOCOL_FEATURES_SET_MASK = 1 << SESSION_PROTOCOL_FEATURES_SET_BIT;

    /** Session flag bit: a memory table was set. */
    public static final int SESSION_MEM_TABLE_SET_BIT = 2;

    /** Mask of {@link #SESSION_MEM_TABLE_SET_BIT}. */
    public static final int SESSION_MEM_TABLE_SET_MASK = 1 << SESSION_MEM_TABLE_SET_BIT;

    /**
     * Session part (version 1.1, in bytes version 1.0 reserved): the device's cache mode (u32), {@link
     * #CACHE_MODE_UNRECORDED}, {@link #CACHE_MODE_WRITEBACK} or {@link #CACHE_MODE_WRITE_THROUGH}: virtio-blk {@code
     * writeback} as the driver chose it through {@code VHOST_USER_SET_CONFIG}.
     */
    public static final int SESSION_CACHE_MODE_OFFSET = 24;

    /** {@link #SESSION_CACHE_MODE_OFFSET}: nothing recorded (and what a 1.0 writer leaves). */
    public static final int CACHE_MODE_UNRECORDED = 0;

    /** {@link #SESSION_CACHE_MODE_OFFSET}: writeback ({@code writeback} 1). */
    public static final int CACHE_MODE_WRITEBACK = 1;

    /** {@link #SESSION_CACHE_MODE_OFFSET}: write-through ({@code writeback} 0). */
    public static final int CACHE_MODE_WRITE_THROUGH = 2;

    /** Every session flag version 1 defines. */
    public static final int SESSION_FLAGS_DEFINED_MASK =
            SESSION_FEATURES_SET_MASK | SESSION_PROTOCOL_FEATURES_SET_MASK | SESSION_MEM_TABLE_SET_MASK;

    /** Most memory regions in a table (vhost-user {@code VHOST_USER_MAX_RAM_SLOTS}). */
    public static final int MAX_MEM_REGIONS = 32;

    /** Length of a memory region record. */
    public static final int MEM_REGION_LENGTH = 40;

    /** Memory region: guest physical address (u64). */
    public static final int MEM_REGION_GUEST_PHYS_ADDR_OFFSET = 0;

    /** Memory region: size in bytes (u64). */
    public static final int MEM_REGION_MEMORY_SIZE_OFFSET = 8;

    /** Memory region: the front-end's user address (u64). */
    public static final int MEM_REGION_USER_ADDR_OFFSET = 16;

    /** Memory region: offset in its fd (u64). */
    public static final int MEM_REGION_MMAP_OFFSET_OFFSET = 24;

    /** Memory region: region id (u32). */
    public static final int MEM_REGION_ID_OFFSET = 32;

    /** Length of a vring record. */
    public static final int VRING_CONFIG_LENGTH = 128;

    /** Vring record: flags (u32), {@code VRING_*_BIT}. */
    public static final int VRING_FLAGS_OFFSET = 0;

    /** Vring record: queue size (u32). */
    public static final int VRING_SIZE_OFFSET = 4;

    /** Vring record: slot count (u32). */
    public static final int VRING_SLOT_COUNT_OFFSET = 8;

    /** Vring record: {@code vhost_vring_addr} flags (u32). */
    public static final int VRING_ADDR_FLAGS_OFFSET = 12;

    /** Vring record: descriptor table or ring GPA (u64). */
    public static final int VRING_DESC_GPA_OFFSET = 16;

    /** Vring record: available ring or driver area GPA (u64). */
    public static final int VRING_AVAIL_GPA_OFFSET = 24;

    /** Vring record: used ring or device area GPA (u64). */
    public static final int VRING_USED_GPA_OFFSET = 32;

    /** Vring record: {@code log_guest_addr} (u64). */
    public static final int VRING_LOG_GUEST_ADDR_OFFSET = 40;

    /** Vring record: the fetch sequence when the queue started (u64, u48 used). */
    public static final int VRING_START_FETCH_SEQ_OFFSET = 48;

    /** Vring record: the last avail index the queue started at (u32, u16 used). */
    public static final int VRING_START_AVAIL_IDX_OFFSET = 56;

    /** Vring record: the used index the queue started at (u32). */
    public static final int VRING_START_USED_IDX_OFFSET = 60;

    /** Vring record: the applied batch sequence when the queue started (u32). */
    public static final int VRING_START_BATCH_SEQ_OFFSET = 64;

    /** Vring flag bit: the queue is configured (size and addresses known). */
    public static final int VRING_CONFIGURED_BIT = 0;

    /** Mask of {@link #VRING_CONFIGURED_BIT}. */
    public static final int VRING_CONFIGURED_MASK = 1 << VRING_CONFIGURED_BIT;

    /** Vring flag bit: the queue is started. */
    public static final int VRING_STARTED_BIT = 1;

    /** Mask of {@link #VRING_STARTED_BIT}. */
    public static final int VRING_STARTED_MASK = 1 << VRING_STARTED_BIT;

    /** Vring flag bit: the queue is enabled. */
    public static final int VRING_ENABLED_BIT = 2;

    /** Mask of {@link #VRING_ENABLED_BIT}. */
    public static final int VRING_ENABLED_MASK = 1 << VRING_ENABLED_BIT;

    /** Vring flag bit: a packed ring. */
    public static final int VRING_PACKED_BIT = 3;

    /** Mask of {@link #VRING_PACKED_BIT}. */
    public static final int VRING_PACKED_MASK = 1 << VRING_PACKED_BIT;

    /** Vring flag bit: the journal keeps copies of fetched entries. */
    public static final int VRING_ENTRY_COPIES_BIT = 4;

    /** Mask of {@link #VRING_ENTRY_COPIES_BIT}. */
    public static final int VRING_ENTRY_COPIES_MASK = 1 << VRING_ENTRY_COPIES_BIT;

    /** Every vring flag version 1 defines. */
    public static final int VRING_FLAGS_DEFINED_MASK = VRING_CONFIGURED_MASK
            | VRING_STARTED_MASK
            | VRING_ENABLED_MASK
            | VRING_PACKED_MASK
            | VRING_ENTRY_COPIES_MASK;

    /** Queue header: the fetch word (u64), {@link #fetchWord(long, int)}. */
    public static final int QUEUE_FETCH_WORD_OFFSET = 0;

    /** Queue header: the used word (u64), {@link #usedWord(int, int)}. */
    public static final int QUEUE_USED_WORD_OFFSET = 8;

    /** Queue header: the batch word (u64), {@link #batchWord(int, int)}. */
    public static final int QUEUE_BATCH_WORD_OFFSET = 16;

    /** Queue header: the number of slots in the batch list (u32). */
    public static final int QUEUE_BATCH_COUNT_OFFSET = 24;

    /** Length of a queue header; the slots follow it. */
    public static final int QUEUE_HEADER_LENGTH = 64;

    /** Slot: fetch sequence (u64, u48 used), 0 = free. */
    public static final int SLOT_SEQ_OFFSET = 0;

    /** Slot: the entry copy. */
    public static final int SLOT_ENTRY_OFFSET = 16;

    /** Length of a slot without its entry copy. */
    public static final int SLOT_HEADER_LENGTH = 16;

    /** Length of an entry copy (an NVMe submission queue entry). */
    public static final int ENTRY_COPY_LENGTH = 64;

    /** Packed cell (spec §6.5): the ring descriptor copy, at this offset of the entry copy. */
    public static final int CELL_DESC_OFFSET = 0;

    /** Packed cell: length of the ring descriptor copy ({@code struct pvirtq_desc}). */
    public static final int CELL_DESC_LENGTH = 16;

    /** Packed cell: the descriptor's position in its chain (u16, 0 = first), at this offset of the entry copy. */
    public static final int CELL_POSITION_OFFSET = 16;

    /** Packed cell: the chain's buffer id (u16, below the ring size), at this offset of the entry copy. */
    public static final int CELL_ID_OFFSET = 18;

    /** Length of one batch list entry (u16 slot number). */
    public static final int BATCH_ENTRY_LENGTH = 2;

    /** Largest max queues (QEMU's {@code VIRTIO_QUEUE_MAX}). */
    public static final int MAX_QUEUES = 1024;

    /** Largest max slots (the largest queue size). */
    public static final int MAX_SLOTS = 32768;

    /** Width of the fetch sequence in bits. */
    public static final int SEQ_BITS = 48;

    /** Mask of a fetch sequence. */
    public static final long SEQ_MASK = (1L << SEQ_BITS) - 1;

    /**
     * A fetch sequence {@code s} is at or before {@code t} if {@code (t - s) & SEQ_MASK} is below this (half the
     * sequence space): sequences wrap at 2<sup>48</sup> and are compared like TCP sequence numbers.
     */
    public static final long SEQ_WINDOW = 1L << (SEQ_BITS - 1);

    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Coordinates (MemorySegment, long offset). */
    private static final VarHandle INT_HANDLE = INT_LE.varHandle();

    /** Coordinates (MemorySegment, long offset). */
    private static final VarHandle LONG_HANDLE = LONG_LE.varHandle();

    private JournalDescriptor() {}

    /**
     * Length of one config copy.
     *
     * @param maxQueues queues per session, already validated
     * @return {@code 1344 + 128 * maxQueues}, a multiple of 64
     */
    public static long configLengthBytes(final int maxQueues) {
        return SESSION_CONFIG_LENGTH + (long) maxQueues * VRING_CONFIG_LENGTH;
    }

    /**
     * Offset of a config copy.
     *
     * @param maxQueues queues per session
     * @param copy 0 or 1
     * @return byte offset of the copy
     */
    public static long configCopyOffset(final int maxQueues, final int copy) {
        return CONFIG_COPIES_OFFSET + copy * configLengthBytes(maxQueues);
    }

    /**
     * Offset of a vring record within a config copy.
     *
     * @param queueIndex below max queues
     * @return byte offset relative to the copy
     */
    public static long vringConfigOffset(final int queueIndex) {
        return SESSION_CONFIG_LENGTH + (long) queueIndex * VRING_CONFIG_LENGTH;
    }

    /**
     * Offset of a memory region record within a config copy.
     *
     * @param index below {@link #MAX_MEM_REGIONS}
     * @return byte offset relative to the copy
     */
    public static long memRegionOffset(final int index) {
        return SESSION_MEM_REGIONS_OFFSET + (long) index * MEM_REGION_LENGTH;
    }

    /**
     * Offset of queue area 0.
     *
     * @param maxQueues queues per session
     * @return {@code 128 + 2 * configLengthBytes(maxQueues)}
     */
    public static long queuesOffset(final int maxQueues) {
        return CONFIG_COPIES_OFFSET + 2 * configLengthBytes(maxQueues);
    }

    /**
     * Length of a slot.
     *
     * @param entryLength 0 or {@link #ENTRY_COPY_LENGTH}
     * @return {@code 16 + entryLength}
     */
    public static int slotLengthBytes(final int entryLength) {
        return SLOT_HEADER_LENGTH + entryLength;
    }

    /**
     * Offset of the batch list within a queue area.
     *
     * @param maxSlots slots per queue
     * @param entryLength 0 or 64
     * @return {@code 64 + align64(maxSlots * slotLength)}
     */
    public static long batchListOffset(final int maxSlots, final int entryLength) {
        return QUEUE_HEADER_LENGTH + alignCacheLine((long) maxSlots * slotLengthBytes(entryLength));
    }

    /**
     * Length of a queue area.
     *
     * @param maxSlots slots per queue
     * @param entryLength 0 or 64
     * @return {@code batchListOffset + align64(2 * maxSlots)}
     */
    public static long queueLengthBytes(final int maxSlots, final int entryLength) {
        return batchListOffset(maxSlots, entryLength) + alignCacheLine((long) maxSlots * BATCH_ENTRY_LENGTH);
    }

    /**
     * Offset of a queue area.
     *
     * @param maxQueues queues per session
     * @param maxSlots slots per queue
     * @param entryLength 0 or 64
     * @param queueIndex below maxQueues
     * @return byte offset of the queue header
     */
    public static long queueOffset(
            final int maxQueues, final int maxSlots, final int entryLength, final int queueIndex) {
        return queuesOffset(maxQueues) + queueIndex * queueLengthBytes(maxSlots, entryLength);
    }

    /**
     * Offset of a slot within a queue area.
     *
     * @param entryLength 0 or 64
     * @param slot below max slots
     * @return byte offset relative to the queue header
     */
    public static long slotOffset(final int entryLength, final int slot) {
        return QUEUE_HEADER_LENGTH + (long) slot * slotLengthBytes(entryLength);
    }

    /**
     * Length of a journal region.
     *
     * @param maxQueues queues per session: [1, {@link #MAX_QUEUES}]
     * @param maxSlots slots per queue: [1, {@link #MAX_SLOTS}]
     * @param entryLength 0 or {@link #ENTRY_COPY_LENGTH}
     * @return length in bytes, a multiple of 64
     * @throws IllegalArgumentException if a parameter is out of range
     */
    public static long lengthBytes(final int maxQueues, final int maxSlots, final int entryLength) {
        checkGeometry(maxQueues, maxSlots, entryLength);
        return queuesOffset(maxQueues) + maxQueues * queueLengthBytes(maxSlots, entryLength);
    }

    /**
     * Formats a region (master, before the region is shared): zero-fills it, writes the header and publishes the
     * version last with a release store (spec §4.1).
     *
     * @param journal the mapped region, 64-byte aligned, at least {@link #lengthBytes} long
     * @param maxQueues queues per session
     * @param maxSlots slots per queue
     * @param entryLength 0 or 64
     * @throws IllegalArgumentException if a parameter is out of range or the region too short or misaligned
     */
    public static void format(
            final MemorySegment journal, final int maxQueues, final int maxSlots, final int entryLength) {
        final long length = lengthBytes(maxQueues, maxSlots, entryLength);
        if (journal.byteSize() < length) {
            throw new IllegalArgumentException(
                    "journal region too short: byteSize=" + journal.byteSize() + ", expected at least " + length);
        }
        if ((journal.address() & (CACHE_LINE_LENGTH - 1)) != 0) {
            throw new IllegalArgumentException(
                    "journal region not 64-byte aligned: 0x" + Long.toHexString(journal.address()));
        }
        journal.asSlice(0, length).fill((byte) 0);
        journal.set(LONG_LE, MAGIC_OFFSET, MAGIC);
        journal.set(INT_LE, MAX_QUEUES_OFFSET, maxQueues);
        journal.set(INT_LE, MAX_SLOTS_OFFSET, maxSlots);
        journal.set(INT_LE, ENTRY_LENGTH_OFFSET, entryLength);
        journal.set(LONG_LE, LENGTH_OFFSET, length);
        // release: the zero fill and the header are visible before the version that says the region is ready
        versionRelease(journal, VERSION);
    }

    /**
     * Checks that a region is published and speaks this major version, and that it carries the magic number.
     *
     * @param journal the mapped region
     * @throws JournalException if the region is shorter than the header, the version is 0 (not ready) or of another
     *     major version, or the magic number is wrong; the message names what was found and expected
     */
    public static void checkVersion(final MemorySegment journal) {
        if (journal.byteSize() < HEADER_LENGTH) {
            throw new JournalException("journal region shorter than its header: found byteSize=" + journal.byteSize()
                    + ", expected at least " + HEADER_LENGTH);
        }
        final int version = versionAcquire(journal);
        if (version == 0) {
            throw new JournalException(
                    "journal not ready: found version=0, expected " + SemanticVersion.toString(VERSION));
        }
        if (SemanticVersion.major(version) != MAJOR_VERSION) {
            throw new JournalException("journal version mismatch: found " + SemanticVersion.toString(version)
                    + ", expected major " + MAJOR_VERSION + " (" + SemanticVersion.toString(VERSION)
                    + "); this slave cannot read or write it");
        }
        final long magic = journal.get(LONG_LE, MAGIC_OFFSET);
        if (magic != MAGIC) {
            throw new JournalException("journal magic mismatch: found 0x" + Long.toHexString(magic) + ", expected 0x"
                    + Long.toHexString(MAGIC));
        }
    }

    /**
     * Checks the geometry in the header (untrusted) and that the mapping covers the region. Call after {@link
     * #checkVersion(MemorySegment)}, whose acquire load makes the header visible.
     *
     * @param journal the mapped region
     * @throws JournalException if max queues, max slots or the entry length are out of range, the stored length
     *     disagrees with the geometry, or the mapping is shorter than the stored length or misaligned
     */
    public static void checkLength(final MemorySegment journal) {
        final int maxQueues = maxQueues(journal);
        final int maxSlots = maxSlots(journal);
        final int entryLength = entryLength(journal);
        try {
            checkGeometry(maxQueues, maxSlots, entryLength);
        } catch (IllegalArgumentException e) {
            throw new JournalException("journal geometry invalid: " + e.getMessage());
        }
        final long expected = lengthBytes(maxQueues, maxSlots, entryLength);
        final long stored = journal.get(LONG_LE, LENGTH_OFFSET);
        if (stored != expected) {
            throw new JournalException("journal length mismatch: found length=" + stored + ", expected " + expected
                    + " for maxQueues=" + maxQueues + " maxSlots=" + maxSlots + " entryLength=" + entryLength);
        }
        if (journal.byteSize() < expected) {
            throw new JournalException("journal mapping too short: found byteSize=" + journal.byteSize()
                    + ", expected at least " + expected);
        }
        if ((journal.address() & (CACHE_LINE_LENGTH - 1)) != 0) {
            throw new JournalException("journal mapping not 64-byte aligned: 0x" + Long.toHexString(journal.address()));
        }
    }

    /**
     * @param journal the mapped region
     * @return the stored version with acquire semantics, 0 if not ready
     */
    public static int versionAcquire(final MemorySegment journal) {
        return (int) INT_HANDLE.getAcquire(journal, (long) VERSION_OFFSET);
    }

    /**
     * Publishes the version with release semantics: the master calls it after every other header field.
     *
     * @param journal the mapped region
     * @param version the version to publish
     */
    public static void versionRelease(final MemorySegment journal, final int version) {
        INT_HANDLE.setRelease(journal, (long) VERSION_OFFSET, version);
    }

    /**
     * @param journal the mapped region
     * @return max queues (untrusted until {@link #checkLength})
     */
    public static int maxQueues(final MemorySegment journal) {
        return journal.get(INT_LE, MAX_QUEUES_OFFSET);
    }

    /**
     * @param journal the mapped region
     * @return max slots per queue (untrusted until {@link #checkLength})
     */
    public static int maxSlots(final MemorySegment journal) {
        return journal.get(INT_LE, MAX_SLOTS_OFFSET);
    }

    /**
     * @param journal the mapped region
     * @return the entry copy length (untrusted until {@link #checkLength})
     */
    public static int entryLength(final MemorySegment journal) {
        return journal.get(INT_LE, ENTRY_LENGTH_OFFSET);
    }

    /**
     * @param journal the mapped region
     * @return the config commit word with acquire semantics: the copy it names is visible
     */
    public static long configGenerationAcquire(final MemorySegment journal) {
        return (long) LONG_HANDLE.getAcquire(journal, (long) CONFIG_GENERATION_OFFSET);
    }

    /**
     * Commits a configuration: release, so that the copy written before it is visible first.
     *
     * @param journal the mapped region
     * @param generation the new generation; copy {@code generation & 1} becomes active
     */
    public static void configGenerationRelease(final MemorySegment journal, final long generation) {
        LONG_HANDLE.setRelease(journal, (long) CONFIG_GENERATION_OFFSET, generation);
    }

    /**
     * @param journal the mapped region
     * @param offset offset of a commit word (a queue header field)
     * @return the u64 with acquire semantics
     */
    public static long wordAcquire(final MemorySegment journal, final long offset) {
        return (long) LONG_HANDLE.getAcquire(journal, offset);
    }

    /**
     * @param journal the mapped region
     * @param offset offset of a commit word (a queue header field)
     * @param value the u64 to release-store
     */
    public static void wordRelease(final MemorySegment journal, final long offset, final long value) {
        LONG_HANDLE.setRelease(journal, offset, value);
    }

    /**
     * @param fetchSeq a fetch sequence (u48)
     * @param lastAvailIdx a last avail index (u16)
     * @return the fetch word
     */
    public static long fetchWord(final long fetchSeq, final int lastAvailIdx) {
        return ((fetchSeq & SEQ_MASK) << 16) | (lastAvailIdx & 0xFFFF);
    }

    /**
     * @param fetchWord a fetch word
     * @return its fetch sequence (u48)
     */
    public static long fetchSeq(final long fetchWord) {
        return fetchWord >>> 16;
    }

    /**
     * @param fetchWord a fetch word
     * @return its last avail index (u16)
     */
    public static int fetchLastAvailIdx(final long fetchWord) {
        return (int) (fetchWord & 0xFFFF);
    }

    /**
     * @param appliedBatchSeq the sequence of the last applied batch (u32)
     * @param usedIdx the used index (u32)
     * @return the used word
     */
    public static long usedWord(final int appliedBatchSeq, final int usedIdx) {
        return ((long) appliedBatchSeq << 32) | (usedIdx & 0xFFFFFFFFL);
    }

    /**
     * @param batchSeq the batch's sequence (u32)
     * @param newUsedIdx the used index after the batch (u32)
     * @return the batch word
     */
    public static long batchWord(final int batchSeq, final int newUsedIdx) {
        return usedWord(batchSeq, newUsedIdx);
    }

    /**
     * @param word a used or batch word
     * @return its batch sequence (u32)
     */
    public static int wordBatchSeq(final long word) {
        return (int) (word >>> 32);
    }

    /**
     * @param word a used or batch word
     * @return its used index (u32)
     */
    public static int wordUsedIdx(final long word) {
        return (int) word;
    }

    /**
     * The fetch sequence after {@code seq}: +1 modulo 2<sup>48</sup>, skipping 0 (0 marks a free slot).
     *
     * @param seq a fetch sequence
     * @return the next one
     */
    public static long nextSeq(final long seq) {
        final long next = (seq + 1) & SEQ_MASK;
        return next == 0 ? 1 : next;
    }

    /**
     * @param seq a fetch sequence
     * @param reference another
     * @return {@code (reference - seq) mod 2^48}: how many sequences {@code seq} lies before {@code reference}; below
     *     {@link #SEQ_WINDOW} means "at or before"
     */
    public static long seqDistance(final long seq, final long reference) {
        return (reference - seq) & SEQ_MASK;
    }

    static void checkGeometry(final int maxQueues, final int maxSlots, final int entryLength) {
        if (maxQueues < 1 || maxQueues > MAX_QUEUES) {
            throw new IllegalArgumentException("maxQueues must be in [1, " + MAX_QUEUES + "]: maxQueues=" + maxQueues);
        }
        if (maxSlots < 1 || maxSlots > MAX_SLOTS) {
            throw new IllegalArgumentException("maxSlots must be in [1, " + MAX_SLOTS + "]: maxSlots=" + maxSlots);
        }
        if (entryLength != 0 && entryLength != ENTRY_COPY_LENGTH) {
            throw new IllegalArgumentException(
                    "entryLength must be 0 or " + ENTRY_COPY_LENGTH + ": entryLength=" + entryLength);
        }
    }

    static long alignCacheLine(final long offset) {
        return (offset + CACHE_LINE_LENGTH - 1) & -CACHE_LINE_LENGTH;
    }
}

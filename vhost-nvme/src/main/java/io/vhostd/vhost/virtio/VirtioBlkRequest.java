package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.VirtioBlk.SECTOR_SHIFT;
import static io.vhostd.vhost.virtio.VirtioBlk.SECTOR_SIZE;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_OFFSET;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_DISCARD_WRITE_ZEROES_NUM_SECTORS_OFFSET;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_DISCARD_WRITE_ZEROES_SECTOR_OFFSET;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_OUTHDR_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_OUTHDR_SECTOR_OFFSET;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_OUTHDR_TYPE_OFFSET;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_DISCARD;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_IN;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_OUT;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_SECURE_ERASE;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A parsed virtio-blk request (virtio 1.2 §5.2.6): header, data segments and status byte location.
 *
 * <p>Reusable: preallocated for {@code maxSegments} data segments and refilled by each {@link #parse}; no allocation
 * per request. Not thread-safe. The header is read once from guest memory during {@link #parse}; the data is not
 * touched (the device engine reads/writes it in place by region id and offset).
 */
public final class VirtioBlkRequest {

    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int capacity;
    private final int[] dataRegionIndex;
    private final int[] dataRegionId;
    private final long[] dataRegionOffset;
    private final long[] dataGpa;
    private final int[] dataLength;
    private final boolean[] dataWritable;

    private int head = -1;
    private int type = -1;
    private long sector;
    private int error;
    private int dataSegmentCount;
    private long dataLengthBytes;
    private boolean hasStatus;
    private int statusRegionIndex = -1;
    private long statusRegionOffset;
    private long statusGpa;
    /** Scratch of {@link #readHeader}: offset, in the segment it returns, of the first byte after the header. */
    private long headerEndOffset;

    private long rangeSector;
    private long rangeNumSectors;
    private int rangeFlags;

    /**
     * @param maxSegments how many data segments this request can hold (&gt;= 1); a chain parsed into it needs at
     *     most {@code chain.segmentCount()}
     */
    public VirtioBlkRequest(int maxSegments) {
        if (maxSegments < 1) {
            throw new IllegalArgumentException("maxSegments must be >= 1, got " + maxSegments);
        }
        capacity = maxSegments;
        dataRegionIndex = new int[maxSegments];
        dataRegionId = new int[maxSegments];
        dataRegionOffset = new long[maxSegments];
        dataGpa = new long[maxSegments];
        dataLength = new int[maxSegments];
        dataWritable = new boolean[maxSegments];
    }

    /**
     * Parses {@code chain} (translated with {@code memory}).
     *
     * <p>Layout: the 16-byte header (type le32, reserved le32, sector le64) is the first 16 bytes of the chain and
     * must be device-readable (it may span descriptors); the status is the last byte of the chain and must be
     * device-writable; data is everything in between, split where the header or status shares a descriptor with
     * data. Direction: IN / GET_ID / GET_LIFETIME data must be device-writable; OUT / DISCARD / WRITE_ZEROES /
     * SECURE_ERASE data device-readable; FLUSH and unknown types are not checked (the caller answers an unknown type
     * with VIRTIO_BLK_S_UNSUPP). Length: IN / OUT data a multiple of 512; DISCARD / WRITE_ZEROES / SECURE_ERASE data
     * a non-zero multiple of 16. A malformed chain ({@code chain.error() != 0}) gives {@link
     * VirtioBlkRequestError#CHAIN_MALFORMED}, with a status location only if the walker located the chain's last byte
     * ({@link DescriptorChain#lastByteLocated()}: device-writable, inside guest memory); nothing else is read.
     *
     * @return true if well-formed; otherwise {@link #error()} says why and {@link #hasStatus()} whether a status
     *     byte was found (so the caller can write VIRTIO_BLK_S_IOERR and complete the request)
     */
    public boolean parse(DescriptorChain chain, GuestMemory memory) {
        head = chain.head();
        type = -1;
        sector = 0;
        error = VirtioBlkRequestError.OK;
        dataSegmentCount = 0;
        dataLengthBytes = 0;
        hasStatus = false;
        statusRegionIndex = -1;
        statusRegionOffset = 0;
        statusGpa = 0;

        int n = chain.segmentCount();
        int last = n - 1;
        if (chain.error() != ChainError.OK) {
            // §5.2.6: the status is the chain's last byte, not the last one translated before the error (that may be
            // data): only the walker's located last byte qualifies
            if (chain.lastByteLocated()) {
                hasStatus = true;
                statusRegionIndex = chain.lastByteRegionIndex();
                statusRegionOffset = chain.lastByteRegionOffset();
                statusGpa = chain.lastByteGpa();
            }
            return fail(VirtioBlkRequestError.CHAIN_MALFORMED);
        }
        // status: the chain's last byte, usable only if device-writable (§5.2.6 "u8 status")
        if (n > 0 && chain.deviceWritable(last)) {
            hasStatus = true;
            statusRegionIndex = chain.regionIndex(last);
            statusRegionOffset = chain.regionOffset(last) + chain.lengthBytes(last) - 1;
            statusGpa = chain.gpa(last) + chain.lengthBytes(last) - 1;
        }
        if (!hasStatus) {
            return fail(VirtioBlkRequestError.STATUS_NOT_WRITABLE);
        }
        // readable segments precede writable ones, so the header is readable iff >= 16 readable bytes
        if (chain.readableBytes() < VIRTIO_BLK_OUTHDR_LENGTH_BYTES) {
            boolean room = chain.readableBytes() + chain.writableBytes() - 1 >= VIRTIO_BLK_OUTHDR_LENGTH_BYTES;
            return fail(room ? VirtioBlkRequestError.HEADER_NOT_READABLE : VirtioBlkRequestError.HEADER_TRUNCATED);
        }
        int dataStartSegment = readHeader(chain, memory);
        long dataStartOffset = headerEndOffset;

        boolean wantWritable = VirtioBlk.dataDeviceWritable(type);
        boolean wantReadable = VirtioBlk.dataDeviceReadable(type);
        for (int i = dataStartSegment; i < n; i++) {
            long start = i == dataStartSegment ? dataStartOffset : 0;
            long end = chain.lengthBytes(i) - (i == last ? 1 : 0);
            if (end <= start) {
                continue;
            }
            boolean writable = chain.deviceWritable(i);
            if (wantWritable && !writable) {
                return fail(VirtioBlkRequestError.DATA_NOT_WRITABLE);
            }
            if (wantReadable && writable) {
                return fail(VirtioBlkRequestError.DATA_NOT_READABLE);
            }
            if (dataSegmentCount >= capacity) {
                return fail(VirtioBlkRequestError.TOO_MANY_SEGMENTS);
            }
            int s = dataSegmentCount++;
            dataRegionIndex[s] = chain.regionIndex(i);
            dataRegionId[s] = chain.regionId(i);
            dataRegionOffset[s] = chain.regionOffset(i) + start;
            dataGpa[s] = chain.gpa(i) + start;
            dataLength[s] = (int) (end - start);
            dataWritable[s] = writable;
            dataLengthBytes += end - start;
        }
        // §5.2.6.1: IN/OUT data is a multiple of 512; discard-like data is whole 16-byte segments
        if ((type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_OUT) && (dataLengthBytes & (SECTOR_SIZE - 1)) != 0) {
            return fail(VirtioBlkRequestError.DATA_LENGTH_INVALID);
        }
        if ((type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES || type == VIRTIO_BLK_T_SECURE_ERASE)
                && (dataLengthBytes == 0 || dataLengthBytes % VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES != 0)) {
            return fail(VirtioBlkRequestError.DATA_LENGTH_INVALID);
        }
        return true;
    }

    /**
     * Reads type and sector from the first 16 (readable) bytes, each guest byte once.
     *
     * @return the segment holding the first byte after the header; {@link #headerEndOffset} is its offset there
     */
    private int readHeader(DescriptorChain chain, GuestMemory memory) {
        int len0 = chain.lengthBytes(0);
        MemorySegment m0 = memory.region(chain.regionIndex(0)).mapping();
        long off0 = chain.regionOffset(0);
        if (len0 >= VIRTIO_BLK_OUTHDR_LENGTH_BYTES) {
            type = m0.get(LE_U32, off0 + VIRTIO_BLK_OUTHDR_TYPE_OFFSET);
            sector = m0.get(LE_U64, off0 + VIRTIO_BLK_OUTHDR_SECTOR_OFFSET);
            headerEndOffset = VIRTIO_BLK_OUTHDR_LENGTH_BYTES;
            return 0;
        }
        // the header spans descriptors: gather it byte by byte (little endian)
        int t = 0;
        long s = 0;
        int k = 0;
        int i = 0;
        long pos = 0;
        while (k < VIRTIO_BLK_OUTHDR_LENGTH_BYTES) {
            if (pos == chain.lengthBytes(i)) {
                i++;
                pos = 0;
                continue;
            }
            MemorySegment m = memory.region(chain.regionIndex(i)).mapping();
            int b = m.get(ValueLayout.JAVA_BYTE, chain.regionOffset(i) + pos) & 0xFF;
            if (k < 4) {
                t |= b << (8 * k);
            } else if (k >= VIRTIO_BLK_OUTHDR_SECTOR_OFFSET) {
                s |= (long) b << (8 * (k - VIRTIO_BLK_OUTHDR_SECTOR_OFFSET));
            }
            k++;
            pos++;
        }
        type = t;
        sector = s;
        headerEndOffset = pos;
        return i;
    }

    private boolean fail(int code) {
        error = code;
        return false;
    }

    /** Head index of the chain (the used ring id), or -1. */
    public int head() {
        return head;
    }

    /** Request type ({@code VIRTIO_BLK_T_*}; any u32 the guest wrote), or -1 if the header was not read. */
    public int type() {
        return type;
    }

    /** Start sector (512-byte units, unsigned) for IN / OUT. */
    public long sector() {
        return sector;
    }

    /** {@link VirtioBlkRequestError} code, 0 if well-formed. */
    public int error() {
        return error;
    }

    /** {@link VirtioBlkRequestError#name(int)} of {@link #error()}. */
    public String errorName() {
        return VirtioBlkRequestError.name(error);
    }

    /** Was a device-writable status byte found? */
    public boolean hasStatus() {
        return hasStatus;
    }

    /** Region index of the status byte, or -1. */
    public int statusRegionIndex() {
        return statusRegionIndex;
    }

    /** Offset of the status byte in its region. */
    public long statusRegionOffset() {
        return statusRegionOffset;
    }

    /** Guest physical address of the status byte (for dirty logging). */
    public long statusGpa() {
        return statusGpa;
    }

    /** Number of data segments. */
    public int dataSegmentCount() {
        return dataSegmentCount;
    }

    /** Region index (in the {@link GuestMemory} given to {@link #parse}) of data segment {@code i}. */
    public int dataRegionIndex(int i) {
        checkIndex(i);
        return dataRegionIndex[i];
    }

    /** {@link GuestMemoryRegion#regionId()} of data segment {@code i}. */
    public int dataRegionId(int i) {
        checkIndex(i);
        return dataRegionId[i];
    }

    /** Byte offset of data segment {@code i} in its region. */
    public long dataRegionOffset(int i) {
        checkIndex(i);
        return dataRegionOffset[i];
    }

    /** Guest physical address of data segment {@code i} (for dirty logging). */
    public long dataGpa(int i) {
        checkIndex(i);
        return dataGpa[i];
    }

    /** Length of data segment {@code i} (&gt; 0). */
    public int dataLengthBytes(int i) {
        checkIndex(i);
        return dataLength[i];
    }

    /** Is data segment {@code i} device-writable? */
    public boolean dataDeviceWritable(int i) {
        checkIndex(i);
        return dataWritable[i];
    }

    /** Total data bytes. */
    public long dataLengthBytes() {
        return dataLengthBytes;
    }

    /**
     * Number of 16-byte segments ({@code struct virtio_blk_discard_write_zeroes}) in the data of a DISCARD,
     * WRITE_ZEROES or SECURE_ERASE request: {@link #dataLengthBytes()} / 16 (the parse checked it is a non-zero
     * multiple of 16).
     */
    public int rangeCount() {
        return (int) Math.min(Integer.MAX_VALUE, dataLengthBytes / VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES);
    }

    /**
     * Reads segment {@code index} of a DISCARD / WRITE_ZEROES / SECURE_ERASE request into {@link #rangeSector()},
     * {@link #rangeNumSectors()} and {@link #rangeFlags()}: each guest byte once (a segment may be split across data
     * buffers), no allocation. The guest may change the bytes at any time: the caller validates and uses the values
     * read here, and does not read the segment again.
     *
     * @throws IndexOutOfBoundsException if {@code index} is outside [0, {@link #rangeCount()})
     */
    public void readRange(GuestMemory memory, int index) {
        if (index < 0 || index >= rangeCount()) {
            throw new IndexOutOfBoundsException("range " + index + " of " + rangeCount());
        }
        long skip = (long) VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES * index;
        int s = 0;
        while (skip >= dataLength[s]) {
            skip -= dataLength[s];
            s++;
        }
        if (dataLength[s] - skip >= VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES) {
            MemorySegment m = memory.region(dataRegionIndex[s]).mapping();
            long off = dataRegionOffset[s] + skip;
            rangeSector = m.get(LE_U64, off + VIRTIO_BLK_DISCARD_WRITE_ZEROES_SECTOR_OFFSET);
            rangeNumSectors =
                    Integer.toUnsignedLong(m.get(LE_U32, off + VIRTIO_BLK_DISCARD_WRITE_ZEROES_NUM_SECTORS_OFFSET));
            rangeFlags = m.get(LE_U32, off + VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_OFFSET);
            return;
        }
        // the segment spans data buffers: gather it byte by byte (little endian)
        long sectorBits = 0;
        long numBits = 0;
        int flagBits = 0;
        long pos = skip;
        for (int k = 0; k < VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES; k++) {
            while (pos == dataLength[s]) {
                s++;
                pos = 0;
            }
            MemorySegment m = memory.region(dataRegionIndex[s]).mapping();
            long b = m.get(ValueLayout.JAVA_BYTE, dataRegionOffset[s] + pos) & 0xFF;
            if (k < VIRTIO_BLK_DISCARD_WRITE_ZEROES_NUM_SECTORS_OFFSET) {
                sectorBits |= b << (8 * k);
            } else if (k < VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_OFFSET) {
                numBits |= b << (8 * (k - VIRTIO_BLK_DISCARD_WRITE_ZEROES_NUM_SECTORS_OFFSET));
            } else {
                flagBits |= (int) b << (8 * (k - VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_OFFSET));
            }
            pos++;
        }
        rangeSector = sectorBits;
        rangeNumSectors = numBits;
        rangeFlags = flagBits;
    }

    /** {@code sector} of the segment last read by {@link #readRange} (512-byte units, unsigned u64). */
    public long rangeSector() {
        return rangeSector;
    }

    /** {@code num_sectors} of the segment last read by {@link #readRange} (u32, as a non-negative long). */
    public long rangeNumSectors() {
        return rangeNumSectors;
    }

    /** {@code flags} of the segment last read by {@link #readRange} (u32). */
    public int rangeFlags() {
        return rangeFlags;
    }

    /**
     * For IN / OUT: does {@code [sector, sector + dataLengthBytes() / 512)} lie within {@code capacitySectors}?
     * {@code sector} is unsigned; a range whose end overflows is outside.
     */
    public boolean sectorRangeWithin(long capacitySectors) {
        long sectors = dataLengthBytes >>> SECTOR_SHIFT;
        return Long.compareUnsigned(sector, capacitySectors) <= 0
                && Long.compareUnsigned(sectors, capacitySectors - sector) <= 0;
    }

    /** Writes the status byte ({@code VIRTIO_BLK_S_*}) into guest memory; no-op if {@link #hasStatus()} is false. */
    public void writeStatus(GuestMemory memory, int status) {
        if (!hasStatus) {
            return;
        }
        memory.region(statusRegionIndex).mapping().set(ValueLayout.JAVA_BYTE, statusRegionOffset, (byte) status);
    }

    /**
     * Copies up to {@link #dataLengthBytes()} bytes of {@code src} into the device-writable data segments, in order
     * (GET_ID, GET_LIFETIME); stops at the first device-readable segment.
     *
     * @return bytes written
     */
    public int writeData(GuestMemory memory, byte[] src) {
        int written = 0;
        for (int i = 0; i < dataSegmentCount && written < src.length; i++) {
            if (!dataWritable[i]) {
                break;
            }
            int n = Math.min(dataLength[i], src.length - written);
            MemorySegment m = memory.region(dataRegionIndex[i]).mapping();
            MemorySegment.copy(src, written, m, ValueLayout.JAVA_BYTE, dataRegionOffset[i], n);
            written += n;
        }
        return written;
    }

    private void checkIndex(int i) {
        if (i < 0 || i >= dataSegmentCount) {
            throw new IndexOutOfBoundsException("data segment " + i + " of " + dataSegmentCount);
        }
    }

    @Override
    public String toString() {
        return "VirtioBlkRequest[head=" + head + ", type=" + VirtioBlk.typeName(type) + ", sector=" + sector
                + ", dataBytes=" + dataLengthBytes + ", segments=" + dataSegmentCount + ", error=" + errorName()
                + ", status=" + hasStatus + "]";
    }
}

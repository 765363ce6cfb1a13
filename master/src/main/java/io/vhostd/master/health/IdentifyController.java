package io.vhostd.master.health;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The fields vhostd reads from the Identify Controller data structure (Identify CNS 01h, NVMe Base Specification 2.0
 * §5.17.2.2, Figure 275; 4096 bytes, little-endian):
 *
 * <pre>
 * bytes    field                                                  here
 *   1:0    PCI Vendor ID (VID)                                    pciVendorId
 *   3:2    PCI Subsystem Vendor ID (SSVID)                        pciSubsystemVendorId
 *  23:4    Serial Number (SN), ASCII, space padded                serialNumber (trimmed)
 *  63:24   Model Number (MN), ASCII, space padded                 modelNumber (trimmed)
 *  71:64   Firmware Revision (FR), ASCII, space padded            firmwareRevision (trimmed)
 * 267:266  Warning Composite Temperature Threshold (WCTEMP), K    warningTemperatureThresholdKelvin
 * 269:268  Critical Composite Temperature Threshold (CCTEMP), K   criticalTemperatureThresholdKelvin
 * </pre>
 *
 * <p>The strings come from a device and are untrusted: trailing spaces and NULs are trimmed, and any byte outside
 * printable ASCII (20h..7Eh) is shown as {@code '?'}.
 */
public record IdentifyController(
        int pciVendorId,
        int pciSubsystemVendorId,
        String serialNumber,
        String modelNumber,
        String firmwareRevision,
        int warningTemperatureThresholdKelvin,
        int criticalTemperatureThresholdKelvin) {

    /** Size of every Identify data structure. */
    public static final int LENGTH_BYTES = 4096;

    public static final int VID_OFFSET = 0;
    public static final int SSVID_OFFSET = 2;
    public static final int SN_OFFSET = 4;
    public static final int SN_BYTES = 20;
    public static final int MN_OFFSET = 24;
    public static final int MN_BYTES = 40;
    public static final int FR_OFFSET = 64;
    public static final int FR_BYTES = 8;
    public static final int WCTEMP_OFFSET = 266;
    public static final int CCTEMP_OFFSET = 268;

    /**
     * Decodes an Identify Controller data structure.
     *
     * @param data exactly {@value #LENGTH_BYTES} bytes
     * @throws IllegalArgumentException when {@code data} is not {@value #LENGTH_BYTES} bytes long
     */
    public static IdentifyController decode(byte[] data) {
        if (data == null || data.length != LENGTH_BYTES) {
            throw new IllegalArgumentException("Identify Controller data must be " + LENGTH_BYTES + " bytes, not "
                    + (data == null ? "null" : data.length));
        }
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        return new IdentifyController(
                Short.toUnsignedInt(b.getShort(VID_OFFSET)),
                Short.toUnsignedInt(b.getShort(SSVID_OFFSET)),
                ascii(data, SN_OFFSET, SN_BYTES),
                ascii(data, MN_OFFSET, MN_BYTES),
                ascii(data, FR_OFFSET, FR_BYTES),
                Short.toUnsignedInt(b.getShort(WCTEMP_OFFSET)),
                Short.toUnsignedInt(b.getShort(CCTEMP_OFFSET)));
    }

    /** An ASCII field, trailing blanks and NULs removed, leading blanks too; non-printable bytes as '?'. */
    static String ascii(byte[] data, int offset, int length) {
        int end = offset + length;
        while (end > offset && (data[end - 1] == ' ' || data[end - 1] == 0)) {
            end--;
        }
        int start = offset;
        while (start < end && data[start] == ' ') {
            start++;
        }
        StringBuilder s = new StringBuilder(end - start);
        for (int i = start; i < end; i++) {
            int c = data[i] & 0xFF;
            s.append(c >= 0x20 && c <= 0x7E ? (char) c : '?');
        }
        return s.toString();
    }
}

package io.vhostd.master.health;

import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The SMART / Health Information log page (Log Page Identifier 02h, NVMe Base Specification 2.0 §5.16.1.3, Figure
 * 207), decoded. All multi-byte fields are little-endian; the 16-byte counters are unsigned 128-bit integers and are
 * kept exact as {@link BigInteger}s (never clamped).
 *
 * <pre>
 * bytes    field                                           here
 *   0      Critical Warning (bits below)                   criticalWarning
 *   2:1    Composite Temperature, kelvin                   compositeTemperatureKelvin
 *   3      Available Spare, %                              availableSparePercent
 *   4      Available Spare Threshold, %                    availableSpareThresholdPercent
 *   5      Percentage Used (may exceed 100, 255 max)       percentageUsed
 *   6      Endurance Group Critical Warning Summary        enduranceGroupCriticalWarningSummary
 *  47:32   Data Units Read (1000 × 512 bytes, rounded up)  dataUnitsRead
 *  63:48   Data Units Written                              dataUnitsWritten
 *  79:64   Host Read Commands                              hostReadCommands
 *  95:80   Host Write Commands                             hostWriteCommands
 * 111:96   Controller Busy Time, minutes                   controllerBusyTimeMinutes
 * 127:112  Power Cycles                                    powerCycles
 * 143:128  Power On Hours                                  powerOnHours
 * 159:144  Unsafe Shutdowns                                unsafeShutdowns
 * 175:160  Media and Data Integrity Errors                 mediaErrors
 * 191:176  Number of Error Information Log Entries         numErrLogEntries
 * 195:192  Warning Composite Temperature Time, minutes     warningCompositeTemperatureTimeMinutes
 * 199:196  Critical Composite Temperature Time, minutes    criticalCompositeTemperatureTimeMinutes
 * 215:200  Temperature Sensor 1..8, kelvin, 2 bytes each   temperatureSensorsKelvin (0 = not implemented)
 * 219:216  Thermal Mgmt Temperature 1 Transition Count     thermalManagementT1TransitionCount
 * 223:220  Thermal Mgmt Temperature 2 Transition Count     thermalManagementT2TransitionCount
 * 227:224  Total Time For Thermal Mgmt Temperature 1, s    thermalManagementT1TotalTimeSeconds
 * 231:228  Total Time For Thermal Mgmt Temperature 2, s    thermalManagementT2TotalTimeSeconds
 * 31:7, 511:232 reserved
 * </pre>
 *
 * @param criticalWarning the Critical Warning bits ({@code *_BIT})
 * @param compositeTemperatureKelvin the controller's composite temperature, kelvin
 * @param temperatureSensorsKelvin sensors 1..8 in order, kelvin; 0 where the sensor is not implemented
 */
public record SmartHealthLog(
        int criticalWarning,
        int compositeTemperatureKelvin,
        int availableSparePercent,
        int availableSpareThresholdPercent,
        int percentageUsed,
        int enduranceGroupCriticalWarningSummary,
        BigInteger dataUnitsRead,
        BigInteger dataUnitsWritten,
        BigInteger hostReadCommands,
        BigInteger hostWriteCommands,
        BigInteger controllerBusyTimeMinutes,
        BigInteger powerCycles,
        BigInteger powerOnHours,
        BigInteger unsafeShutdowns,
        BigInteger mediaErrors,
        BigInteger numErrLogEntries,
        long warningCompositeTemperatureTimeMinutes,
        long criticalCompositeTemperatureTimeMinutes,
        List<Integer> temperatureSensorsKelvin,
        long thermalManagementT1TransitionCount,
        long thermalManagementT2TransitionCount,
        long thermalManagementT1TotalTimeSeconds,
        long thermalManagementT2TotalTimeSeconds) {

    /** Size of the page. */
    public static final int LENGTH_BYTES = 512;

    /** Critical Warning bit 0: the available spare capacity has fallen below the threshold. */
    public static final int AVAILABLE_SPARE_BIT = 0;

    /** Bit 1: a temperature is at or above an over temperature threshold or below an under temperature threshold. */
    public static final int TEMPERATURE_BIT = 1;

    /** Bit 2: NVM subsystem reliability is degraded (media or internal errors). */
    public static final int RELIABILITY_BIT = 2;

    /** Bit 3: all of the media has been placed in read only mode. */
    public static final int READ_ONLY_BIT = 3;

    /** Bit 4: the volatile memory backup device has failed. */
    public static final int VOLATILE_MEMORY_BACKUP_BIT = 4;

    /** Bit 5: the Persistent Memory Region has become read-only or unreliable. */
    public static final int PERSISTENT_MEMORY_REGION_BIT = 5;

    /** 0 °C in kelvin, as NVMe reports temperatures in whole kelvin and nvme-cli converts them ({@code K - 273}). */
    public static final int ZERO_CELSIUS_KELVIN = 273;

    public static final int CRITICAL_WARNING_OFFSET = 0;
    public static final int COMPOSITE_TEMPERATURE_OFFSET = 1;
    public static final int AVAILABLE_SPARE_OFFSET = 3;
    public static final int AVAILABLE_SPARE_THRESHOLD_OFFSET = 4;
    public static final int PERCENTAGE_USED_OFFSET = 5;
    public static final int ENDURANCE_GROUP_CRITICAL_WARNING_SUMMARY_OFFSET = 6;
    public static final int DATA_UNITS_READ_OFFSET = 32;
    public static final int DATA_UNITS_WRITTEN_OFFSET = 48;
    public static final int HOST_READ_COMMANDS_OFFSET = 64;
    public static final int HOST_WRITE_COMMANDS_OFFSET = 80;
    public static final int CONTROLLER_BUSY_TIME_OFFSET = 96;
    public static final int POWER_CYCLES_OFFSET = 112;
    public static final int POWER_ON_HOURS_OFFSET = 128;
    public static final int UNSAFE_SHUTDOWNS_OFFSET = 144;
    public static final int MEDIA_ERRORS_OFFSET = 160;
    public static final int NUM_ERR_LOG_ENTRIES_OFFSET = 176;
    public static final int WARNING_TEMPERATURE_TIME_OFFSET = 192;
    public static final int CRITICAL_TEMPERATURE_TIME_OFFSET = 196;
    public static final int TEMPERATURE_SENSOR_1_OFFSET = 200;
    public static final int TEMPERATURE_SENSORS = 8;
    public static final int THERMAL_MANAGEMENT_T1_TRANSITION_COUNT_OFFSET = 216;
    public static final int THERMAL_MANAGEMENT_T2_TRANSITION_COUNT_OFFSET = 220;
    public static final int THERMAL_MANAGEMENT_T1_TOTAL_TIME_OFFSET = 224;
    public static final int THERMAL_MANAGEMENT_T2_TOTAL_TIME_OFFSET = 228;

    /** Size of the 128-bit counters. */
    public static final int COUNTER_BYTES = 16;

    public SmartHealthLog {
        temperatureSensorsKelvin = List.copyOf(temperatureSensorsKelvin);
    }

    /**
     * Decodes a page as the controller returned it.
     *
     * @param page exactly {@value #LENGTH_BYTES} bytes (a device is untrusted input: any other length is refused
     *     rather than read short or padded)
     * @throws IllegalArgumentException when {@code page} is not {@value #LENGTH_BYTES} bytes long
     */
    public static SmartHealthLog decode(byte[] page) {
        if (page == null || page.length != LENGTH_BYTES) {
            throw new IllegalArgumentException("SMART / Health Information log page must be " + LENGTH_BYTES
                    + " bytes, not " + (page == null ? "null" : page.length));
        }
        ByteBuffer b = ByteBuffer.wrap(page).order(ByteOrder.LITTLE_ENDIAN);
        List<Integer> sensors = new ArrayList<>(TEMPERATURE_SENSORS);
        for (int i = 0; i < TEMPERATURE_SENSORS; i++) {
            sensors.add(Short.toUnsignedInt(b.getShort(TEMPERATURE_SENSOR_1_OFFSET + 2 * i)));
        }
        return new SmartHealthLog(
                Byte.toUnsignedInt(b.get(CRITICAL_WARNING_OFFSET)),
                Short.toUnsignedInt(b.getShort(COMPOSITE_TEMPERATURE_OFFSET)),
                Byte.toUnsignedInt(b.get(AVAILABLE_SPARE_OFFSET)),
                Byte.toUnsignedInt(b.get(AVAILABLE_SPARE_THRESHOLD_OFFSET)),
                Byte.toUnsignedInt(b.get(PERCENTAGE_USED_OFFSET)),
                Byte.toUnsignedInt(b.get(ENDURANCE_GROUP_CRITICAL_WARNING_SUMMARY_OFFSET)),
                uint128(page, DATA_UNITS_READ_OFFSET),
                uint128(page, DATA_UNITS_WRITTEN_OFFSET),
                uint128(page, HOST_READ_COMMANDS_OFFSET),
                uint128(page, HOST_WRITE_COMMANDS_OFFSET),
                uint128(page, CONTROLLER_BUSY_TIME_OFFSET),
                uint128(page, POWER_CYCLES_OFFSET),
                uint128(page, POWER_ON_HOURS_OFFSET),
                uint128(page, UNSAFE_SHUTDOWNS_OFFSET),
                uint128(page, MEDIA_ERRORS_OFFSET),
                uint128(page, NUM_ERR_LOG_ENTRIES_OFFSET),
                Integer.toUnsignedLong(b.getInt(WARNING_TEMPERATURE_TIME_OFFSET)),
                Integer.toUnsignedLong(b.getInt(CRITICAL_TEMPERATURE_TIME_OFFSET)),
                sensors,
                Integer.toUnsignedLong(b.getInt(THERMAL_MANAGEMENT_T1_TRANSITION_COUNT_OFFSET)),
                Integer.toUnsignedLong(b.getInt(THERMAL_MANAGEMENT_T2_TRANSITION_COUNT_OFFSET)),
                Integer.toUnsignedLong(b.getInt(THERMAL_MANAGEMENT_T1_TOTAL_TIME_OFFSET)),
                Integer.toUnsignedLong(b.getInt(THERMAL_MANAGEMENT_T2_TOTAL_TIME_OFFSET)));
    }

    /** The composite temperature in whole degrees Celsius ({@code K - 273}, as nvme-cli prints it). */
    public int temperatureCelsius() {
        return compositeTemperatureKelvin - ZERO_CELSIUS_KELVIN;
    }

    /** True when Critical Warning bit {@code bit} is set. */
    public boolean criticalWarning(int bit) {
        return (criticalWarning >>> bit & 1) != 0;
    }

    /** The unsigned little-endian 128-bit integer at {@code offset}. */
    static BigInteger uint128(byte[] page, int offset) {
        byte[] bigEndian = new byte[COUNTER_BYTES];
        for (int i = 0; i < COUNTER_BYTES; i++) {
            bigEndian[COUNTER_BYTES - 1 - i] = page[offset + i];
        }
        return new BigInteger(1, bigEndian);
    }
}

// Fire times, time zones and placeholders, computed inside workerd (its Intl and time zone data).
import { describe, expect, it } from "vitest";
import { checkPlaceholders, placeholderValues, renderInput } from "../../src/services/schedule-template";
import {
  canonicalTimeZone,
  checkCron,
  checkTimeZone,
  dateInZone,
  formatInZone,
  latestOccurrence,
  nextOccurrences,
} from "../../src/services/schedule-times";

const NOW = new Date("2026-06-01T00:00:00Z");
const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

describe("next fire times across daylight-saving changes", () => {
  it("fires a 02:30 New York schedule at 03:00 EDT on the spring-forward day, then at 02:30 again", () => {
    const times = nextOccurrences("30 2 * * *", "America/New_York", new Date("2026-03-07T12:00:00Z"), 3);
    expect(iso(times)).toEqual([
      "2026-03-08T07:00:00.000Z", // 02:30 does not exist; 03:00 EDT is the first valid time after the gap
      "2026-03-09T06:30:00.000Z", // 02:30 EDT
      "2026-03-10T06:30:00.000Z",
    ]);
    expect(times.map((t) => formatInZone(t, "America/New_York"))).toEqual([
      "2026-03-08T03:00:00-04:00",
      "2026-03-09T02:30:00-04:00",
      "2026-03-10T02:30:00-04:00",
    ]);
  });

  it("fires a 02:30 New York schedule once on the fall-back day, at 02:30 EST", () => {
    const times = nextOccurrences("30 2 * * *", "America/New_York", new Date("2026-10-31T12:00:00Z"), 3);
    expect(iso(times)).toEqual([
      "2026-11-01T07:30:00.000Z",
      "2026-11-02T07:30:00.000Z",
      "2026-11-03T07:30:00.000Z",
    ]);
    expect(formatInZone(times[0] as Date, "America/New_York")).toBe("2026-11-01T02:30:00-05:00");
  });

  it("fires a 01:30 New York schedule once on the fall-back day although 01:30 happens twice", () => {
    const times = nextOccurrences("30 1 * * *", "America/New_York", new Date("2026-10-31T12:00:00Z"), 2);
    expect(iso(times)).toEqual(["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]);
  });

  it("fires a quarter-hourly New York schedule on both passes of the repeated hour", () => {
    const times = nextOccurrences("*/30 * * * *", "America/New_York", new Date("2026-11-01T04:45:00Z"), 5);
    expect(iso(times)).toEqual([
      "2026-11-01T05:00:00.000Z", // 01:00 EDT
      "2026-11-01T05:30:00.000Z", // 01:30 EDT
      "2026-11-01T06:00:00.000Z", // 01:00 EST
      "2026-11-01T06:30:00.000Z", // 01:30 EST
      "2026-11-01T07:00:00.000Z", // 02:00 EST
    ]);
  });

  it("follows London's change from GMT to BST and back", () => {
    const spring = nextOccurrences("0 9 * * *", "Europe/London", new Date("2026-03-28T00:00:00Z"), 2);
    expect(iso(spring)).toEqual(["2026-03-28T09:00:00.000Z", "2026-03-29T08:00:00.000Z"]);
    const autumn = nextOccurrences("0 9 * * *", "Europe/London", new Date("2026-10-24T00:00:00Z"), 2);
    expect(iso(autumn)).toEqual(["2026-10-24T08:00:00.000Z", "2026-10-25T09:00:00.000Z"]);
    expect(formatInZone(spring[1] as Date, "Europe/London")).toBe("2026-03-29T09:00:00+01:00");
    expect(formatInZone(autumn[1] as Date, "Europe/London")).toBe("2026-10-25T09:00:00+00:00");
  });

  it("keeps Kolkata's half-hour offset", () => {
    const times = nextOccurrences("0 9 * * 1-5", "Asia/Kolkata", new Date("2026-03-06T00:00:00Z"), 3);
    expect(iso(times)).toEqual([
      "2026-03-06T03:30:00.000Z", // Friday 09:00 IST
      "2026-03-09T03:30:00.000Z", // Monday
      "2026-03-10T03:30:00.000Z",
    ]);
    expect(formatInZone(times[0] as Date, "Asia/Kolkata")).toBe("2026-03-06T09:00:00+05:30");
  });

  it("finds the latest occurrence at or before a moment", () => {
    const cron = "30 2 * * *";
    const zone = "America/New_York";
    expect(latestOccurrence(cron, zone, new Date("2026-03-09T06:30:00.000Z"))?.toISOString()).toBe(
      "2026-03-09T06:30:00.000Z",
    );
    expect(latestOccurrence(cron, zone, new Date("2026-03-09T06:29:59.999Z"))?.toISOString()).toBe(
      "2026-03-08T07:00:00.000Z",
    );
  });
});

describe("cron and time zone checks", () => {
  it("accepts five fields", () => {
    expect(checkCron("0 9 * * 1-5", NOW)).toEqual([]);
    expect(checkCron(" */15  * * * * ", NOW)).toEqual([]);
  });

  it("refuses six fields with seconds, saying so", () => {
    const [problem] = checkCron("0 0 9 * * *", NOW);
    expect(problem?.path).toBe("cron");
    expect(problem?.message).toContain("five-field");
    expect(problem?.message).toContain("seconds");
  });

  it.each([
    ["@daily", "got 1 field"],
    ["0 9 * *", "got 4 fields"],
    ["61 9 * * *", "not a valid cron expression"],
    ["0 9 * * MON-FUNDAY", "not a valid cron expression"],
    ["0 9 31 2 *", "never fires"],
  ])("refuses %s", (cron, message) => {
    expect(checkCron(cron, NOW)[0]?.message).toContain(message);
  });

  it("knows IANA zones, in any case, and refuses others", () => {
    expect(canonicalTimeZone("Asia/Kolkata")).toBe("Asia/Kolkata");
    expect(canonicalTimeZone("europe/london")).toBe("Europe/London");
    expect(canonicalTimeZone("utc")).toBe("UTC");
    expect(canonicalTimeZone("America/Argentina/Buenos_Aires")).toBe("America/Argentina/Buenos_Aires");
    for (const bad of ["Mars/Olympus_Mons", "+05:30", "EST5EDT!", ""]) {
      expect(canonicalTimeZone(bad), bad).toBeNull();
    }
    expect(checkTimeZone("Mars/Olympus_Mons")[0]).toMatchObject({ path: "timezone" });
  });
});

describe("placeholders", () => {
  it("fills in UTC instants and local calendar dates, empty before the first success", () => {
    // 00:30 in Kolkata on 8 March is still 7 March in UTC: the date is the local one.
    const values = placeholderValues(new Date("2026-03-07T19:00:00Z"), null, "Asia/Kolkata");
    expect(values).toEqual({
      scheduled_at: "2026-03-07T19:00:00.000Z",
      scheduled_date: "2026-03-08",
      last_success_at: "",
      last_success_date: "",
    });
    const later = placeholderValues(
      new Date("2026-03-09T19:00:00Z"),
      "2026-03-07T19:00:00.000Z",
      "Asia/Kolkata",
    );
    expect(later.last_success_at).toBe("2026-03-07T19:00:00.000Z");
    expect(later.last_success_date).toBe("2026-03-08");
    expect(dateInZone(new Date("2026-03-08T03:00:00Z"), "America/New_York")).toBe("2026-03-07");
  });

  it("renders strings anywhere in a JSON input and leaves everything else alone", () => {
    const values = placeholderValues(new Date("2026-03-08T07:00:00Z"), null, "America/New_York");
    const input = {
      company: "Acme",
      since: "{{ last_success_date }}",
      window: { to: "{{scheduled_at}}", days: 7, labels: ["on {{scheduled_date}}", true] },
      "{{scheduled_date}}": "keys are not templates",
    };
    expect(renderInput(input, values)).toEqual({
      company: "Acme",
      since: "",
      window: { to: "2026-03-08T07:00:00.000Z", days: 7, labels: ["on 2026-03-08", true] },
      "{{scheduled_date}}": "keys are not templates",
    });
    expect(renderInput("News on {{scheduled_date}}?", values)).toBe("News on 2026-03-08?");
  });

  it("uses a placeholder's fallback while its value is empty, and the value once there is one", () => {
    const input = {
      question: "What did Acme announce since {{last_success_date|the start of the month}}?",
      since: "{{ last_success_at | 2026-01-01T00:00:00Z }}",
      plain: "{{last_success_date}}",
    };
    const first = placeholderValues(new Date("2026-03-09T14:00:00Z"), null, "America/New_York");
    expect(renderInput(input, first)).toEqual({
      question: "What did Acme announce since the start of the month?",
      since: "2026-01-01T00:00:00Z",
      plain: "",
    });
    const later = placeholderValues(
      new Date("2026-03-10T14:00:00Z"),
      "2026-03-09T14:05:00.000Z",
      "America/New_York",
    );
    expect(renderInput(input, later)).toEqual({
      question: "What did Acme announce since 2026-03-09?",
      since: "2026-03-09T14:05:00.000Z",
      plain: "2026-03-09",
    });
  });

  it("checks fallbacks like placeholders: known name, one that can be empty, some text", () => {
    expect(checkPlaceholders("Since {{last_success_date|the start of the month}}", "template.input")).toEqual(
      [],
    );
    expect(checkPlaceholders({ a: "{{ last_success_at | never }}" }, "template.input")).toEqual([]);
    const problems = checkPlaceholders(
      {
        a: "{{yesterday|the day before}}",
        b: "{{scheduled_date|today}}",
        c: "{{last_success_date|}}",
        d: "{{last_success_date | }}",
      },
      "template.input",
    );
    expect(problems).toEqual([
      { path: "template.input.a", message: expect.stringContaining("unknown placeholder {{yesterday}}") },
      { path: "template.input.b", message: expect.stringContaining("scheduled_date always has a value") },
      { path: "template.input.c", message: expect.stringContaining("empty fallback") },
      { path: "template.input.d", message: expect.stringContaining("empty fallback") },
    ]);
  });

  it("refuses unknown placeholders, with the JSON path of each", () => {
    expect(checkPlaceholders("Since {{last_success_date}} and {{today}}", "template.input")).toEqual([
      expect.objectContaining({ path: "template.input", message: expect.stringContaining("{{today}}") }),
    ]);
    expect(
      checkPlaceholders({ a: { b: ["{{nope}}"] }, c: "{{scheduled_at}}" }, "template.input").map(
        (p) => p.path,
      ),
    ).toEqual(["template.input.a.b.0"]);
  });
});

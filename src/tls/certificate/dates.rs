//! Date arithmetic for X.509 validity: Unix seconds to a UTC calendar instant, and that
//! instant as the UTCTime or GeneralizedTime text RFC 5280 asks for.

use super::der;

pub(super) const SECONDS_PER_DAY: u64 = 86_400;

/// A calendar instant in UTC (proleptic Gregorian), as X.509 times need it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CivilTime {
    year: u64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// 9999-12-31T23:59:59Z: GeneralizedTime has four year digits, and RFC 5280 uses this
/// instant for "no well-defined expiration".
const LATEST_ENCODABLE_UNIX: u64 = 253_402_300_799;

impl CivilTime {
    /// Converts with Howard Hinnant's `civil_from_days`: eras of 400 years (146097 days)
    /// counted from 0000-03-01, so that the leap day falls at the end of each year.
    pub(super) fn from_unix(unix_seconds: u64) -> Self {
        let seconds = unix_seconds.min(LATEST_ENCODABLE_UNIX);
        let days_since_epoch = seconds / SECONDS_PER_DAY;
        let second_of_day = seconds % SECONDS_PER_DAY;

        const DAYS_FROM_0000_03_01_TO_EPOCH: u64 = 719_468;
        const DAYS_PER_ERA: u64 = 146_097;
        let days = days_since_epoch + DAYS_FROM_0000_03_01_TO_EPOCH;
        let era = days / DAYS_PER_ERA;
        let day_of_era = days % DAYS_PER_ERA; // [0, 146096]
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11], 0 = March
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        // January and February belong to the next civil year.
        let year = era * 400 + year_of_era + u64::from(month <= 2);

        CivilTime {
            year,
            month: month as u8,
            day: day as u8,
            hour: (second_of_day / 3600) as u8,
            minute: (second_of_day / 60 % 60) as u8,
            second: (second_of_day % 60) as u8,
        }
    }

    /// RFC 5280 4.1.2.5: UTCTime for years 1950 through 2049, GeneralizedTime otherwise;
    /// both in UTC ("Z") with seconds and without fractions.
    pub(super) fn tag_and_text(&self) -> (u8, String) {
        let (tag, year_digits) = if (1950..=2049).contains(&self.year) {
            (der::UTC_TIME, 2)
        } else {
            (der::GENERALIZED_TIME, 4)
        };
        let mut text = String::with_capacity(15);
        push_digits(&mut text, self.year, year_digits);
        for part in [self.month, self.day, self.hour, self.minute, self.second] {
            push_digits(&mut text, part.into(), 2);
        }
        text.push('Z');
        (tag, text)
    }
}

/// The last `width` decimal digits of `value`, zero-padded. By hand rather than with
/// `format!`: this runs for each virtual session, after the set-up has let the cold data
/// (`format!`'s templates and digit tables among it) go (`crate::hot_data`).
fn push_digits(out: &mut String, value: u64, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u64.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::SOME_NOW;
    use super::*;

    fn civil(year: u64, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> CivilTime {
        CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn civil_time_of_known_instants() {
        assert_eq!(CivilTime::from_unix(0), civil(1970, 1, 1, 0, 0, 0));
        assert_eq!(
            CivilTime::from_unix(951_782_400),
            civil(2000, 2, 29, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(951_868_799),
            civil(2000, 2, 29, 23, 59, 59)
        );
        assert_eq!(
            CivilTime::from_unix(951_868_800),
            civil(2000, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(SOME_NOW),
            civil(2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(
            CivilTime::from_unix(4_107_542_400),
            civil(2100, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(2_524_608_000),
            civil(2050, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            CivilTime::from_unix(LATEST_ENCODABLE_UNIX),
            civil(9999, 12, 31, 23, 59, 59)
        );
        assert_eq!(
            CivilTime::from_unix(u64::MAX),
            civil(9999, 12, 31, 23, 59, 59)
        );
    }

    #[test]
    fn utc_time_through_2049_then_generalized_time() {
        assert_eq!(
            CivilTime::from_unix(0).tag_and_text(),
            (der::UTC_TIME, "700101000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(951_782_400).tag_and_text(),
            (der::UTC_TIME, "000229000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(2_524_607_999).tag_and_text(),
            (der::UTC_TIME, "491231235959Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(2_524_608_000).tag_and_text(),
            (der::GENERALIZED_TIME, "20500101000000Z".to_string())
        );
        assert_eq!(
            CivilTime::from_unix(u64::MAX).tag_and_text(),
            (der::GENERALIZED_TIME, "99991231235959Z".to_string())
        );
    }
}

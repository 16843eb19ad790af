//! Pages of a listing: by number (a bounded offset) or after a cursor (a seek, at any depth).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::Invalid;
use crate::ids::OrderId;
use crate::order::Order;

/// How many orders a page of a listing holds: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Largest page size.
    pub const MAX: u32 = 100;
    /// The original service's default, 20.
    pub const DEFAULT: Self = Self(20);

    /// Parses a page size.
    pub fn new(size: i64) -> Result<Self, Invalid> {
        match u32::try_from(size) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(Invalid::OutOfRange {
                min: "1".into(),
                max: Self::MAX.to_string(),
            }),
        }
    }

    /// The number inside.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Where a page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    /// Page `n`, counted from 1: the orders after the first `(n - 1) × size`. At most
    /// [`PageRequest::MAX_PAGE`], so no listing skips more than a hundred thousand orders.
    Number(NonZeroU32),
    /// The page after the one whose [`OrderPage::next`] this is: the orders past its last
    /// one, found by a seek however deep the listing goes.
    After(PageCursor),
}

/// Where the page after another one starts: the place of that page's last order in the
/// listing's order (newest first: creation time, then id), and the new page's number.
///
/// Written as 56 lowercase hex digits (its page number less one, microseconds since the
/// epoch and the order id), which clients pass back as they got them. Any 56 such digits
/// read as a cursor: a place in the listing, its time held to the years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// The number of the page that starts here.
    pub page: NonZeroU32,
    /// The creation time of the last order before it.
    pub created_at: DateTime<Utc>,
    /// That order's id.
    pub id: OrderId,
}

impl PageCursor {
    /// The start of page `page`, right after `last`.
    pub fn after(last: &Order, page: NonZeroU32) -> Self {
        Self {
            page,
            created_at: last.created_at,
            id: last.id,
        }
    }

    /// Whether `order` comes after the cursor in a listing, newest first.
    pub fn precedes(&self, order: &Order) -> bool {
        (order.created_at, order.id) < (self.created_at, self.id)
    }
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0_u8; 28];
        bytes[..4].copy_from_slice(&(self.page.get() - 1).to_be_bytes());
        bytes[4..12].copy_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes[12..].copy_from_slice(self.id.as_uuid().as_bytes());
        f.write_str(&crate::hex::encode(&bytes))
    }
}

impl FromStr for PageCursor {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let malformed = || Invalid::Malformed("must be a cursor this service gave".into());
        if s.len() != 56
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed());
        }
        let bytes = crate::hex::decode::<28>(s).ok_or_else(malformed)?;
        let page = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
        let micros = i64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes"));
        let id = uuid::Uuid::from_bytes(bytes[12..].try_into().expect("16 bytes"));
        // Years 1 to 9999: every store keeps those, and every order is placed in them.
        let micros = micros.clamp(-62_135_596_800_000_000, 253_402_300_799_999_999);
        Ok(Self {
            page: NonZeroU32::MIN.saturating_add(page),
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(malformed)?,
            id: OrderId::from_uuid(id),
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Where it starts.
    pub start: PageStart,
    /// Orders per page.
    pub size: PageSize,
}

impl PageRequest {
    /// The first page of the default size.
    pub const FIRST: Self = Self {
        start: PageStart::Number(NonZeroU32::MIN),
        size: PageSize::DEFAULT,
    };

    /// Largest page number: with pages of 100, a page skips at most 99,900 orders. Deeper
    /// pages are reached with [`PageStart::After`].
    pub const MAX_PAGE: u32 = 1_000;

    /// Parses a 1-based page number, 1 to [`MAX_PAGE`](Self::MAX_PAGE).
    pub fn page_number(page: i64) -> Result<NonZeroU32, Invalid> {
        u32::try_from(page)
            .ok()
            .filter(|p| *p <= Self::MAX_PAGE)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| Invalid::OutOfRange {
                min: "1".into(),
                max: Self::MAX_PAGE.to_string(),
            })
    }

    /// The page's number, however it was asked for.
    pub const fn number(&self) -> NonZeroU32 {
        match self.start {
            PageStart::Number(n) => n,
            PageStart::After(cursor) => cursor.page,
        }
    }

    /// Matching orders skipped before this page, past its cursor if it has one.
    pub fn offset(&self) -> u64 {
        match self.start {
            PageStart::Number(n) => u64::from(n.get() - 1) * u64::from(self.size.get()),
            PageStart::After(_) => 0,
        }
    }

    /// The cursor the page starts after, if it has one.
    pub const fn cursor(&self) -> Option<&PageCursor> {
        match &self.start {
            PageStart::Number(_) => None,
            PageStart::After(cursor) => Some(cursor),
        }
    }

    /// How many orders a store reads for the page: one more than it holds, to learn
    /// whether another page follows (see [`OrderPage::new`]).
    pub const fn fetch(&self) -> u32 {
        self.size.get() + 1
    }
}

/// A page of orders, how many match the filter in all, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPage {
    /// The page's orders, newest first.
    pub orders: Vec<Order>,
    /// How many orders match the filter, on all pages.
    pub total: u64,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageCursor>,
}

impl OrderPage {
    /// The page `page` asked for, from up to [`PageRequest::fetch`] orders read in the
    /// listing's order from its start: the extra one, if there, means a next page.
    pub fn new(mut fetched: Vec<Order>, total: u64, page: &PageRequest) -> Self {
        let size = page.size.get() as usize;
        let next = if fetched.len() > size {
            fetched.truncate(size);
            fetched
                .last()
                .map(|last| PageCursor::after(last, page.number().saturating_add(1)))
        } else {
            None
        };
        Self {
            orders: fetched,
            total,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_anything_else_is_refused() {
        let cursor = PageCursor {
            page: NonZeroU32::new(1_234_567).unwrap(),
            created_at: DateTime::from_timestamp_micros(1_764_160_000_123_456).unwrap(),
            id: OrderId::new(),
        };
        let written = cursor.to_string();
        assert_eq!(written.len(), 56);
        assert_eq!(written.parse::<PageCursor>().unwrap(), cursor);
        for bad in [
            "",
            "abc",
            &written[1..],
            &format!("{written}0"),
            &written.to_uppercase(),
            &format!("{}g", &written[1..]),
        ] {
            assert!(bad.parse::<PageCursor>().is_err(), "{bad:?}");
        }
        let far = format!("ffffffff8000000000000000{}", "0".repeat(32));
        let far = far.parse::<PageCursor>().unwrap();
        assert_eq!(far.page.get(), u32::MAX);
        assert_eq!(far.created_at.to_rfc3339(), "0001-01-01T00:00:00+00:00");
    }
}

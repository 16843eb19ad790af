use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rand::SeedableRng;

use super::*;

/// The Standard Webhooks reference test vector.
#[test]
fn the_signature_matches_the_specifications_test_vector() {
    let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    assert_eq!(
        secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

#[test]
fn verification_accepts_either_signature_and_refuses_tampering_and_stale_timestamps() {
    let (a, b) = (Secret::generate(), Secret::generate());
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let ts = now.timestamp();
    let header = signature_header(&[&a, &b], "evt_1", ts, b"{}");
    let ts_text = ts.to_string();
    let check = |secret: &Secret, body: &[u8], at: DateTime<Utc>| {
        verify(
            &[secret],
            Some("evt_1"),
            Some(&ts_text),
            Some(&header),
            body,
            at,
        )
    };
    assert_eq!(check(&a, b"{}", now), Ok(()));
    assert_eq!(check(&b, b"{}", now), Ok(()));
    assert_eq!(
        check(&Secret::generate(), b"{}", now),
        Err(VerifyError::Signature)
    );
    assert_eq!(check(&a, b"{ }", now), Err(VerifyError::Signature));
    assert_eq!(
        check(&a, b"{}", now + chrono::Duration::minutes(6)),
        Err(VerifyError::Stale(ts))
    );
}

#[test]
fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let url = EndpointUrl::parse("https://example.com/hooks", false).unwrap();
    let mut endpoint = Endpoint::create(
        NewEndpoint {
            url,
            events: event_types(None).unwrap(),
            owner: None,
            description: String::new(),
        },
        now,
    );
    let old = endpoint.secret.clone();
    let new = endpoint.rotate_secret(now, Duration::from_secs(3600));
    assert_eq!(endpoint.signing_secrets(now), [&new, &old]);
    let later = now + chrono::Duration::seconds(3601);
    assert_eq!(endpoint.signing_secrets(later), [&new]);
}

#[test]
fn secrets_read_back_what_they_show_and_hide_in_debug() {
    let secret = Secret::generate();
    assert_eq!(Secret::parse(&secret.expose()), Ok(secret.clone()));
    assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
    assert!(Secret::parse("whsec_c2hvcnQ=").is_err(), "too short");
    assert!(Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
}

#[test]
fn urls_must_be_https_unless_http_is_allowed() {
    assert!(EndpointUrl::parse("https://hooks.example.com/x?y=1", false).is_ok());
    assert!(EndpointUrl::parse("http://127.0.0.1:9000/x", false).is_err());
    assert!(EndpointUrl::parse("http://127.0.0.1:9000/x", true).is_ok());
    assert!(EndpointUrl::parse("http://[::1]:9000/x", true).is_ok());
    for bad in [
        "ftp://x",
        "https://",
        "https:///path",
        "https://a b",
        "https://host:99999/",
        "hooks",
    ] {
        assert!(EndpointUrl::parse(bad, true).is_err(), "{bad}");
    }
}

#[test]
fn event_types_default_to_all_and_refuse_unknown_and_empty_lists() {
    assert_eq!(event_types(None).unwrap().len(), EventType::ALL.len());
    assert!(event_types(Some(&[])).is_err());
    assert!(event_types(Some(&["order.shipped".into()])).is_err());
    let one = event_types(Some(&["order.confirmed".into()])).unwrap();
    assert_eq!(one.into_iter().collect::<Vec<_>>(), [EventType::Confirmed]);
    for t in EventType::ALL {
        assert_eq!(t.as_str().parse(), Ok(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
}

#[test]
fn ids_show_their_prefix_and_read_back() {
    let id = EventId::new();
    let text = id.to_string();
    assert!(text.starts_with("evt_") && text.len() == 36, "{text}");
    assert_eq!(text.parse(), Ok(id));
    assert!("ep_123".parse::<EndpointId>().is_err());
    assert!(text.parse::<EndpointId>().is_err());
}

#[test]
fn the_schedule_spans_about_a_day_honours_retry_after_and_ends() {
    let schedule = RetrySchedule::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let total: i64 = (1..=7)
        .map(|n| (schedule.next_attempt(n, now, None, &mut rng).unwrap() - now).num_seconds())
        .sum();
    assert!((89_000..=110_000).contains(&total), "{total} s");
    assert_eq!(schedule.next_attempt(8, now, None, &mut rng), None);
    let first = schedule.next_attempt(1, now, None, &mut rng).unwrap() - now;
    assert!((4500..=5500).contains(&first.num_milliseconds()), "{first}");
    let asked = schedule
        .next_attempt(1, now, Some(Duration::from_secs(120)), &mut rng)
        .unwrap();
    assert_eq!(asked - now, chrono::Duration::seconds(120));
}

#[test]
fn an_excerpt_is_short_and_valid_text() {
    let long = "é".repeat(400);
    let cut = excerpt(long.as_bytes());
    assert!(cut.len() <= RESPONSE_EXCERPT_BYTES);
    assert!(cut.chars().all(|c| c == 'é'));
}

#[test]
fn a_retry_after_is_honoured_up_to_the_schedules_longest_delay() {
    let schedule = RetrySchedule {
        jitter: 0.0,
        ..RetrySchedule::default()
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let after = |asked: u64, rng: &mut rand::rngs::StdRng| {
        schedule
            .next_attempt(1, now, Some(Duration::from_secs(asked)), rng)
            .unwrap()
            - now
    };
    assert_eq!(
        after(120, &mut rng).num_seconds(),
        120,
        "later than 5 s: honoured"
    );
    assert_eq!(
        after(1, &mut rng).num_seconds(),
        5,
        "sooner: the schedule's"
    );
    let ten_hours = 10 * 3600;
    assert_eq!(after(99_999_999_999_999, &mut rng).num_seconds(), ten_hours);
    assert_eq!(after(u64::MAX, &mut rng).num_seconds(), ten_hours);
}

#[test]
fn a_logged_url_shows_no_token() {
    let url = EndpointUrl::parse(
        "https://bot:pass@hooks.example.com:8443/T0/B1?token=abc#x",
        false,
    )
    .unwrap();
    assert_eq!(url.for_log(), "https://hooks.example.com:8443/T0/B1…");
    let plain = EndpointUrl::parse("https://hooks.example.com/orders", false).unwrap();
    assert_eq!(plain.for_log(), "https://hooks.example.com/orders");
}

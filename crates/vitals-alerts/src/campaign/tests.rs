use super::*;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

fn campaign(every: Option<i64>, until: Option<i64>) -> Campaign {
    Campaign {
        id: "cp-9".into(),
        name: "Flu season".into(),
        cohort: "ward-3".into(),
        subject: "Your flu shot".into(),
        message: "Flu shots are free at the clinic this month.".into(),
        start_ms: 10 * D,
        every: every.map(DurationMs),
        until_ms: until,
        created_by: "u-1".into(),
        created_ms: 0,
        cancelled_ms: None,
    }
}

#[test]
fn a_one_off_campaign_is_due_once_from_its_start() {
    let c = campaign(None, None);
    assert_eq!(c.due(None, 10 * D - 1), None);
    assert_eq!(c.due(None, 10 * D), Some(0));
    assert_eq!(c.due(None, 20 * D), Some(0), "late is still sent");
    assert_eq!(c.due(Some(0), 20 * D), None);
    assert_eq!((c.next_at(None), c.next_at(Some(0))), (Some(10 * D), None));
}

#[test]
fn a_repeating_campaign_sends_the_latest_occurrence_due_and_stops_at_its_end() {
    let c = campaign(Some(7 * D), Some(10 * D + 21 * D));
    assert_eq!(c.due(None, 10 * D + H), Some(0));
    assert_eq!(c.due(Some(0), 10 * D + 6 * D), None);
    assert_eq!(c.due(Some(0), 10 * D + 7 * D), Some(1));
    // Down for two weeks: only the latest missed occurrence goes.
    assert_eq!(c.due(Some(0), 10 * D + 15 * D), Some(2));
    assert_eq!(c.due(Some(2), 10 * D + 100 * D), Some(3), "the last one, on `until`");
    assert_eq!(c.due(Some(3), 10 * D + 100 * D), None);
    assert_eq!(c.next_at(Some(1)), Some(10 * D + 14 * D));
    assert_eq!(c.next_at(Some(3)), None);
    let cancelled = Campaign { cancelled_ms: Some(11 * D), ..c };
    assert_eq!((cancelled.due(Some(0), 30 * D), cancelled.next_at(Some(0))), (None, None));
}

#[test]
fn campaigns_are_checked_field_by_field() {
    let ok = campaign(Some(D), None);
    assert_eq!(ok.check(), Ok(()));
    let field = |c: Campaign| match c.check() {
        Err(CampaignError::Invalid { field, .. }) => field,
        Ok(()) => "ok",
    };
    assert_eq!(field(Campaign { name: " ".into(), ..ok.clone() }), "name");
    assert_eq!(field(Campaign { subject: "a\nBcc: x".into(), ..ok.clone() }), "subject");
    assert_eq!(field(Campaign { message: "x".repeat(MAX_MESSAGE_CHARS + 1), ..ok.clone() }), "message");
    assert_eq!(field(Campaign { every: Some(DurationMs(60_000)), ..ok.clone() }), "every");
    assert_eq!(field(Campaign { until_ms: Some(0), ..ok }), "until");
}

#[test]
fn each_member_gets_one_notice_on_their_channel_or_a_reason() {
    let c = campaign(None, None);
    let key = UnsubscribeKey::new([7; 32]);
    let consent = |channel| Some(Consent { channel, since_ms: 0, by: "user:ann".into() });
    let members = [
        Member {
            patient: "p-1".into(),
            consent: consent(Channel::Sms),
            address: Some("+15550001".into()),
            in_reach: true,
        },
        Member { patient: "p-2".into(), consent: None, address: Some("b@example.org".into()), in_reach: true },
        Member { patient: "p-3".into(), consent: consent(Channel::Email), address: None, in_reach: true },
        Member {
            patient: "p-4".into(),
            consent: consent(Channel::Email),
            address: Some("d@x.org".into()),
            in_reach: false,
        },
    ];
    let (sends, notices) = deliveries(&c, 0, &members, &key, "https://vitals.example.org/", 5);
    let why: Vec<Option<Skipped>> = sends.iter().map(|s| s.skipped).collect();
    assert_eq!(why, [None, Some(Skipped::NotOptedIn), Some(Skipped::NoAddress), Some(Skipped::OutOfReach)]);
    assert_eq!(notices.len(), 1);
    let n = &notices[0];
    assert_eq!(
        (n.channel, n.address.as_str(), n.kind, n.severity),
        (Channel::Sms, "+15550001", NoticeKind::Campaign, Severity::Info)
    );
    assert_eq!(sends[0].notice.as_deref(), Some(n.id.as_str()));
    assert!(!n.text.contains("p-1") && !n.payload.to_string().contains("p-1"), "no pseudonym in what is sent");
    let link = format!("https://vitals.example.org/unsubscribe?token={}", key.token(&n.id));
    assert!(n.text.starts_with("Flu shots are free") && n.text.ends_with(&link), "{}", n.text);
    assert_eq!(n.payload["unsubscribe"], link);
    // Made again (after a crash), it is the same notice.
    let (_, again) = deliveries(&c, 0, &members, &key, "https://vitals.example.org", 9);
    assert_eq!((again[0].id.as_str(), again[0].text.as_str()), (n.id.as_str(), n.text.as_str()));
    let (_, next) = deliveries(&c, 1, &members, &key, "https://vitals.example.org", 9);
    assert_ne!(next[0].id, n.id, "each occurrence is its own notice");
}

#[test]
fn unsubscribe_tokens_verify_only_under_their_key_and_unaltered() {
    let key = UnsubscribeKey::new([1; 32]);
    let t = key.token("nt-0123456789abcdef");
    assert_eq!(key.verify(&t), Some("nt-0123456789abcdef"));
    assert_eq!(UnsubscribeKey::new([2; 32]).verify(&t), None);
    let (id, tag) = t.split_once('.').expect("dot");
    assert_eq!(key.verify(&format!("nt-0123456789abcdee.{tag}")), None);
    let mut flipped = tag.to_owned();
    flipped.replace_range(0..1, if tag.starts_with('0') { "1" } else { "0" });
    assert_eq!(key.verify(&format!("{id}.{flipped}")), None);
    for bad in ["", ".", "nt-1", "nt-1.zz", "x.00112233445566778899aabbccddeeff", &format!("{id}.{tag}00")] {
        assert_eq!(key.verify(bad), None, "{bad:?}");
    }
}

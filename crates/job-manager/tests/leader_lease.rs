//! Leader election by a `coordination.k8s.io/v1` Lease, against a strict fake of the Lease
//! API (`tests/fake_lease`): acquire, renew, takeover only after the lease expired, a
//! leader that stops renewing stops leading before anyone else may start, resourceVersion
//! conflicts never make two leaders, release on shutdown hands over at once; and two
//! `job-manager` binaries on one PostgreSQL electing by a Lease.

mod fake_lease;
mod pg_support;
mod support;

use std::time::{Duration, Instant};

use fake_lease::FakeLeases;
use job_manager::leader::{LeaseElector, Timing};

const NS: &str = "flink-suite";
const LEASE: &str = "job-manager-leader";

const FAST: Timing = Timing {
    lease_duration: Duration::from_secs(1),
    renew_deadline: Duration::from_millis(600),
    retry_period: Duration::from_millis(100),
};

fn elector(fake: &FakeLeases, id: &str) -> LeaseElector {
    LeaseElector::new(fake.client(), NS, LEASE, id, FAST)
}

#[tokio::test]
async fn a_lease_is_acquired_renewed_and_taken_over_only_after_it_expired() {
    let fake = FakeLeases::start().await;
    let mut a = elector(&fake, "a");
    let mut b = elector(&fake, "b");
    assert!(a.step().await.unwrap(), "a creates the lease and leads");
    assert!(a.leadership().get());
    let l = fake.lease(NS, LEASE).unwrap();
    assert_eq!(l["spec"]["holderIdentity"], "a");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(l["spec"]["leaseTransitions"], 0);
    assert!(!b.step().await.unwrap(), "b follows");
    assert!(!b.leadership().get());

    // A renews: a new resourceVersion and renewTime each time; B, seeing the lease change,
    // keeps following for longer than the lease duration.
    let started = Instant::now();
    let mut last_renewal = Instant::now();
    while started.elapsed() < Duration::from_millis(1600) {
        let before = fake.lease(NS, LEASE).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        last_renewal = Instant::now();
        assert!(a.step().await.unwrap());
        let after = fake.lease(NS, LEASE).unwrap();
        assert_ne!(
            before["metadata"]["resourceVersion"],
            after["metadata"]["resourceVersion"]
        );
        assert_ne!(before["spec"]["renewTime"], after["spec"]["renewTime"]);
        assert!(!b.step().await.unwrap(), "b never takes a renewed lease");
        tokio::time::sleep(FAST.retry_period).await;
    }

    // A stops renewing (its API calls hang, or it is paused): its leadership lapses at the
    // renew deadline, before B may take the lease at the lease duration (both counted from
    // A's last renewal).
    let stopped = last_renewal;
    let lapsed = support::eventually("a's leadership lapses", Duration::from_secs(2), || async {
        (!a.leadership().get()).then(|| stopped.elapsed())
    })
    .await;
    // (`eventually` polls, so `lapsed` is late by up to one poll.)
    assert!(
        lapsed <= FAST.renew_deadline + Duration::from_millis(300),
        "{lapsed:?}"
    );
    let taken = loop {
        if b.step().await.unwrap() {
            break stopped.elapsed();
        }
        assert!(stopped.elapsed() < Duration::from_secs(5), "b takes over");
        tokio::time::sleep(FAST.retry_period).await;
    };
    assert!(
        taken >= FAST.lease_duration,
        "b waited for the expiry: {taken:?}"
    );
    assert!(lapsed < taken);
    let l = fake.lease(NS, LEASE).unwrap();
    assert_eq!(l["spec"]["holderIdentity"], "b");
    assert_eq!(l["spec"]["leaseTransitions"], 1);
    // A comes back: the lease is B's and renewed, so A follows.
    assert!(!a.step().await.unwrap());
    assert!(!a.leadership().get());
    assert!(b.step().await.unwrap());
    // The elector only ever reads, creates and updates its one Lease.
    for (verb, ns, name) in fake.requests() {
        assert!(
            ["get", "create", "update"].contains(&verb.as_str()),
            "{verb}"
        );
        assert_eq!(ns, NS);
        assert!(name.is_empty() || name == LEASE, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_version_conflicts_never_make_two_leaders() {
    let fake = FakeLeases::start().await;
    let mut a = elector(&fake, "a");
    let mut b = elector(&fake, "b");
    assert!(a.step().await.unwrap());
    // Another writer got in between A's read and its renewal: A stops leading at once...
    fake.conflict_next_put();
    assert!(!a.step().await.unwrap());
    assert!(!a.leadership().get());
    // ...and reads again next time: the lease is still A's, so it renews and leads.
    assert!(a.step().await.unwrap());

    // Released leases taken by both at the same time: the version check lets one win.
    for round in 0..20 {
        let (leader, other) = if a.leadership().get() {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        leader.release().await.unwrap();
        assert_eq!(fake.holder(NS, LEASE).as_deref(), Some(""));
        let (ra, rb) = tokio::join!(leader.step(), other.step());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra ^ rb, "round {round}: exactly one leads ({ra}, {rb})");
        let winner = if ra {
            leader.identity()
        } else {
            other.identity()
        };
        assert_eq!(fake.holder(NS, LEASE).as_deref(), Some(winner));
        assert!(a.leadership().get() ^ b.leadership().get());
    }
}

#[tokio::test]
async fn the_leader_releases_the_lease_on_shutdown_and_the_next_takes_it_at_once() {
    let fake = FakeLeases::start().await;
    let a = elector(&fake, "a");
    let leads = a.leadership();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(a.run(async move {
        let _ = stopped.await;
    }));
    support::eventually("a leads", Duration::from_secs(5), || async {
        leads.get().then_some(())
    })
    .await;
    let mut b = elector(&fake, "b");
    assert!(!b.step().await.unwrap());
    stop.send(()).unwrap();
    task.await.unwrap();
    assert!(!leads.get());
    assert_eq!(fake.holder(NS, LEASE).as_deref(), Some(""));
    // No waiting for the lease duration: an empty holder is free.
    assert!(b.step().await.unwrap());
}

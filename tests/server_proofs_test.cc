// Signed checkpoints and the proofs storeledgerd serves: a checkpoint
// signed every N events, inclusion and consistency proofs that verify
// against it, and who may ask.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kMerchant1;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::ServerTest;

// ---- proofs

TEST_F(ServerTest, SignsCheckpointsAndServesProofsThatVerify) {
  ServerOptions options = Options();
  absl::StatusOr<SigningKey> key = GenerateSigningKey("test.example/ledger");
  ASSERT_TRUE(key.ok()) << key.status();
  CheckpointSignerOptions signer;
  signer.key = *key;
  signer.every_events = 3;
  signer.every = absl::Hours(1);
  options.checkpoints = signer;
  Start(std::move(options));
  // The signer polls every kSignerPollInterval; wait for it (bounded) to
  // sign at least `size`.
  v1::SignedCheckpoint checkpoint;
  auto await_checkpoint = [&](uint64_t size) {
    for (int attempt = 0; attempt < 100 && checkpoint.tree_size() < size;
         ++attempt) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      grpc::Status status = stub_->GetCheckpoint(
          &context, v1::GetCheckpointRequest(), &checkpoint);
      if (!status.ok()) {
        ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
      }
      absl::SleepFor(kSignerPollInterval);
    }
  };
  int opened = 0;
  auto open_store = [&] {
    const std::string id = absl::StrCat("s", opened++);
    ASSERT_EQ(Execute(OpenStoreCommand(id, id, "m1")).status(), v1::ACCEPTED);
  };
  // The first tick signs whatever is there, however much the signer saw.
  open_store();
  await_checkpoint(1);
  const uint64_t first = checkpoint.tree_size();
  ASSERT_GE(first, 1u);
  // Then it signs once every_events more were appended, not before.
  while (server_->ledger().log().head().position < first + 3) open_store();
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_EQ(head, first + 3);
  await_checkpoint(head);
  ASSERT_EQ(checkpoint.tree_size(), head);
  absl::StatusOr<Checkpoint> trusted =
      VerifyCheckpoint(checkpoint.note(), key->verifier);
  ASSERT_TRUE(trusted.ok()) << trusted.status();

  grpc::ClientContext inclusion_context;
  Authorize(&inclusion_context, kInvestigator);
  v1::GetInclusionProofRequest inclusion_request;
  inclusion_request.set_position(2);
  v1::InclusionProof inclusion;
  ASSERT_TRUE(
      stub_
          ->GetInclusionProof(&inclusion_context, inclusion_request, &inclusion)
          .ok());
  EXPECT_EQ(inclusion.tree_size(), head);
  EXPECT_EQ(inclusion.checkpoint().note(), checkpoint.note());
  const std::vector<std::string> path(inclusion.audit_path().begin(),
                                      inclusion.audit_path().end());
  EXPECT_TRUE(merkle::VerifyInclusion(1, head,
                                      merkle::LeafHash(inclusion.envelope()),
                                      path, trusted->root)
                  .ok());

  grpc::ClientContext consistency_context;
  Authorize(&consistency_context, kAuditor);
  v1::GetConsistencyProofRequest consistency_request;
  consistency_request.set_first_size(1);
  v1::ConsistencyProof consistency;
  ASSERT_TRUE(stub_
                  ->GetConsistencyProof(&consistency_context,
                                        consistency_request, &consistency)
                  .ok());
  const std::vector<std::string> hashes(consistency.path().begin(),
                                        consistency.path().end());
  EXPECT_TRUE(merkle::VerifyConsistency(1, head, consistency.first_root(),
                                        trusted->root, hashes)
                  .ok());

  // A merchant may not ask; a position past the tree is a bad argument.
  grpc::ClientContext merchant_context;
  Authorize(&merchant_context, kMerchant1);
  v1::InclusionProof ignored;
  EXPECT_EQ(
      stub_->GetInclusionProof(&merchant_context, inclusion_request, &ignored)
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext past_context;
  Authorize(&past_context, kAuditor);
  inclusion_request.set_position(head + 1);
  EXPECT_EQ(stub_->GetInclusionProof(&past_context, inclusion_request, &ignored)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace storeledger
